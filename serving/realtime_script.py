"""The Lua script behind ``serving.realtime``, generated from the windowed-aggregation declaration.

The script handles one transaction for every windowed view (``KEYS[v]``: the view's hash for the transaction's
entity; ``ARGV``: event id, event time in microseconds, then per view the values its features read). Per view:

1. ``HGETALL`` the entity's events (field: event id; value: ``<time>\\x1f<value>\\x1f...``). If the event id is
   there at or before this time, the transaction is a retry: it is answered as of the recorded time and not
   recorded again. A copy stamped earlier than the recorded one replaces it (the earliest copy is the event).
2. One pass over the events computes every feature: each window is a test ``as_of - W <= s < as_of`` and each
   feature an update of a local accumulator. The code is written out per view from the declaration, so a pass
   costs a few instructions per event and feature, whatever the number of features.
3. Events older than the entity's newest minus the largest window and the allowed lateness are deleted, the
   transaction is recorded, and the key's expiry is pushed to the largest window plus twice the lateness.

The reply is one string: every feature's value as a little-endian double (``struct.pack``), in the views' order.
Doubles carry the counts exactly and the sums as computed. Formatting them as text (``%.17g``) cost Redis ~0.7 µs
a value here, a third of the script's time, and Python as much again to parse. An empty window gives the declared
empty value (``WindowedFeature.empty``).
"""

from __future__ import annotations

from collections.abc import Sequence

from feature_repo.windows import WindowedFeature, WindowedView

_HEAD = """\
local SEP = "\\31"
local id, t = ARGV[1], tonumber(ARGV[2])
local out = {}
"""

_VIEW = """\
do
  local key = KEYS[{v}]
  local events = redis.call("HGETALL", key)
  local as_of, record = t, true
  for r = 1, #events, 2 do
    if events[r] == id then
      local m = events[r + 1]
      local old = tonumber(string.sub(m, 1, string.find(m, SEP, 1, true) - 1))
      if old <= t then as_of, record = old, false end
      break
    end
  end
  local newest, stamps = t, {{}}
{init}
  for r = 2, #events, 2 do
    local m = events[r]
    local stop = string.find(m, SEP, 1, true)
    local s = tonumber(string.sub(m, 1, stop - 1))
    stamps[r] = s
    if s > newest then newest = s end
    if s < as_of and s >= as_of - {horizon} then
{parse}
{windows}
    end
  end
{outputs}
  local cutoff, gone = newest - {retention}, {{}}
  for r = 2, #events, 2 do
    if stamps[r] < cutoff then gone[#gone + 1] = events[r - 1] end
  end
  for i = 1, #gone, 1000 do
    redis.call("HDEL", key, unpack(gone, i, math.min(i + 999, #gone)))
  end
  if record then
    redis.call("HSET", key, id, ARGV[2] .. SEP .. ARGV[{payload}])
    redis.call("PEXPIRE", key, {ttl_ms})
  end
end
"""


def lua_script(windows: Sequence[WindowedView]) -> str:
    """The whole script: one block per view, in order; outputs are the views' features in order."""
    blocks, first = [], 1
    for v, view in enumerate(windows, start=1):
        blocks.append(_view_block(view, v, first))
        first += len(view.features)
    values = "".join(f", out[{k}]" for k in range(1, first))
    return _HEAD + "".join(blocks) + f'return struct.pack("<{"d" * (first - 1)}"{values})\n'


def _view_block(view: WindowedView, v: int, first: int) -> str:
    columns = view.value_columns  # the payload's values, in this order
    used = sorted({columns.index(f.column) for f in view.features if f.column in columns and _reads_value(f)})
    numeric = sorted({columns.index(f.column) for f in view.features if f.function in ("sum", "max")})
    init = [f"  local a{i} = {_start(f)}" for i, f in enumerate(view.features)]
    init += [f"  local d{i} = {{}}" for i, f in enumerate(view.features) if f.function == "count_distinct"]
    parse = _parse(len(columns), used) + [f"      local x{c} = tonumber(v{c})" for c in numeric]
    windows = []
    for window in sorted({f.window_us for f in view.features}, reverse=True):
        updates = [_update(i, f, columns) for i, f in enumerate(view.features) if f.window_us == window]
        windows.append(f"      if s >= as_of - {window} then\n" + "\n".join(updates) + "\n      end")
    outputs = [f"  out[{first + i}] = {_output(i, f)}" for i, f in enumerate(view.features)]
    return _VIEW.format(
        v=v,
        horizon=view.horizon_us,
        retention=view.horizon_us + view.lateness_us,
        ttl_ms=(view.horizon_us + 2 * view.lateness_us) // 1000,
        payload=2 + v,
        init="\n".join(init),
        parse="\n".join(parse),
        windows="\n".join(windows),
        outputs="\n".join(outputs),
    )


def _reads_value(feature: WindowedFeature) -> bool:
    return feature.function in ("sum", "max", "count_distinct")


def _parse(width: int, used: list[int]) -> list[str]:
    """Lua that cuts the values after the timestamp (``stop`` is the first separator) into ``v<i>`` locals."""
    if not used:
        return []
    lines = ["      local p0 = stop"]
    for c in range(max(used) + 1):
        if c < width - 1:
            lines.append(f"      local p{c + 1} = string.find(m, SEP, p{c} + 1, true)")
            lines.append(f"      local v{c} = string.sub(m, p{c} + 1, p{c + 1} - 1)")
        else:
            lines.append(f"      local v{c} = string.sub(m, p{c} + 1)")
    return lines


def _start(feature: WindowedFeature) -> str:
    return "false" if feature.function in ("max", "seconds_since_last") else "0"  # false: nothing seen yet


def _update(i: int, feature: WindowedFeature, columns: list[str]) -> str:
    pad = "        "
    function = feature.function
    if function == "count":
        return f"{pad}a{i} = a{i} + 1"
    if function == "seconds_since_last":
        return f"{pad}if not a{i} or s > a{i} then a{i} = s end"
    c = columns.index(feature.column)
    if function == "sum":
        return f"{pad}if x{c} then a{i} = a{i} + x{c} end"
    if function == "max":
        return f"{pad}if x{c} and (not a{i} or x{c} > a{i}) then a{i} = x{c} end"
    if function == "count_distinct":
        return f'{pad}if v{c} ~= "" and not d{i}[v{c}] then d{i}[v{c}] = true; a{i} = a{i} + 1 end'
    raise ValueError(f"no Lua for aggregation function {function!r}")  # windows.py refuses unknown functions


def _output(i: int, feature: WindowedFeature) -> str:
    """The value sent back, a number; empty windows as declared (``false``: nothing seen)."""
    if feature.function in ("count", "count_distinct", "sum"):
        return f"a{i}"
    if feature.function == "seconds_since_last":
        return f"a{i} and (as_of - a{i}) / 1e6 or {feature.empty!r}"
    return f"a{i} or {feature.empty!r}"
