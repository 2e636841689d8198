"""The Lua script behind ``serving.realtime``, generated from the windowed-aggregation declaration.

The script handles transactions one after the other, each for every windowed view. A transaction's ``V`` keys
(the views' hashes for its entities) follow the previous one's in ``KEYS``, and its ``2 + V`` arguments (event id,
event time in microseconds, then per view the event as it is stored) in ``ARGV``. Per transaction and view:

1. ``HGETALL`` the entity's events (field: event id; value: the event, ``event_layout``). If the event id is there
   at or before this time, the transaction is a retry: it is answered as of the recorded time and not recorded
   again. A copy stamped earlier than the recorded one replaces it (the earliest copy is the event).
2. One pass over the events computes every feature: each window is a test ``as_of - W <= s < as_of`` and each
   feature an update of a local accumulator. The code is written out per view from the declaration, so a pass
   costs a few instructions per event and feature, whatever the number of features.
3. Events older than the entity's newest minus the largest window and the allowed lateness are deleted, the
   transaction is recorded, and the key's expiry is pushed to the largest window plus twice the lateness.

An event is stored packed (``EventLayout``): a zero byte, its time and its numbers as little-endian doubles, then
its text values, each ended by a zero byte. One ``struct.unpack`` reads it. The text form written before
(``<time>\\x1f<value>\\x1f...``), cut apart with ``string.find``/``string.sub``, cost Redis about a fifth more a
transaction here (40-55 against 31-43 µs, entities with about nine events a view); such events are still read,
until they age out of the state.

The reply is one string: per transaction, in order, every feature's value as a little-endian double
(``struct.pack``), in the views' order. Doubles carry the counts exactly and the sums as computed. Formatting
them as text (``%.17g``) cost Redis ~0.7 µs a value here, a third of the script's time, and Python as much again
to parse. An empty window gives the declared empty value (``WindowedFeature.empty``).

One call for many transactions spares Redis and the client a command each (parsing, packing, a reply to read):
with 64 transactions a call, the service executed 6-10% fewer instructions for a 1,000-transaction batch
(callgrind), and Redis spent 30-39 against 38-45 µs a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feature_repo.windows import WindowedFeature, WindowedView

_HEAD = """\
local SEP, NAN = "\\31", 0/0
local byte, find, sub, decode = string.byte, string.find, string.sub, struct.unpack
local out, replies, marker = {{}}, {{}}
local function stamp(m)
  if byte(m, 1) == 0 then return (decode("<d", m, 2)) end
  return tonumber(sub(m, 1, find(m, SEP, 1, true) - 1))
end
for k = 0, #ARGV / {width} - 1 do
local keys, args = k * {views}, k * {width}
local id, t = ARGV[args + 1], tonumber(ARGV[args + 2])
"""

_VIEW = """\
do
  local key = KEYS[keys + {v}]
  local events = redis.call("HGETALL", key)
  local as_of, record = t, true
  for r = 1, #events, 2 do
    if events[r] == id then
      local old = stamp(events[r + 1])
      if old <= t then as_of, record = old, false end
      break
    end
  end
  local newest, stamps = t, {{}}
{init}
  for r = 2, #events, 2 do
    local m = events[r]
    local s{declare}
    if byte(m, 1) == 0 then
      marker, s{declare} = decode("{layout}", m)
    else
{legacy}
    end
    stamps[r] = s
    if s > newest then newest = s end
    if s < as_of and s >= as_of - {horizon} then
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
    redis.call("HSET", key, id, ARGV[args + {payload}])
    redis.call("PEXPIRE", key, {ttl_ms})
  end
end
"""


@dataclass(frozen=True)
class EventLayout:
    """How a view's events are stored: ``\\x00``, the time (µs) and ``numbers`` as little-endian doubles (NaN:
    missing), then ``texts``, each followed by ``\\x00``. Numbers are the columns a sum or maximum reads; the
    other values (distinct counts) are text."""

    numbers: tuple[str, ...]
    texts: tuple[str, ...]

    @classmethod
    def of(cls, view: WindowedView) -> EventLayout:
        numeric = {f.column for f in view.features if f.function in ("sum", "max")}
        columns = view.value_columns
        return cls(tuple(c for c in columns if c in numeric), tuple(c for c in columns if c not in numeric))

    @property
    def lua_format(self) -> str:
        return "<Bd" + "d" * len(self.numbers) + "s" * len(self.texts)

    @property
    def python_format(self) -> str:
        """The packed head (marker, time, numbers); the texts follow it."""
        return "<Bd" + "d" * len(self.numbers)


def lua_script(windows: Sequence[WindowedView]) -> str:
    """The whole script: per transaction, one block per view, in order; each transaction's reply is its features
    in the views' order, and the transactions' replies are concatenated."""
    blocks, first = [], 1
    for v, view in enumerate(windows, start=1):
        blocks.append(_view_block(view, v, first))
        first += len(view.features)
    values = "".join(f", out[{k}]" for k in range(1, first))
    head = _HEAD.format(views=len(windows), width=2 + len(windows))
    reply = f'replies[k + 1] = struct.pack("<{"d" * (first - 1)}"{values})\nend\nreturn table.concat(replies)\n'
    return head + "".join(blocks) + reply


def _view_block(view: WindowedView, v: int, first: int) -> str:
    layout = EventLayout.of(view)
    names = {c: f"c{i}" for i, c in enumerate(view.value_columns)}  # a value's local, by column
    stored = [names[c] for c in (*layout.numbers, *layout.texts)]
    init = [f"  local a{i} = {_start(f)}" for i, f in enumerate(view.features)]
    init += [f"  local d{i} = {{}}" for i, f in enumerate(view.features) if f.function == "count_distinct"]
    windows = []
    for window in sorted({f.window_us for f in view.features}, reverse=True):
        features = [(i, f) for i, f in enumerate(view.features) if f.window_us == window]
        updates = [_update(i, f, names.get(f.column, "")) for i, f in features]
        if window == view.horizon_us:  # the pass's own test already holds
            windows.append("\n".join(u.removeprefix("  ") for u in updates))
        else:
            windows.append(f"      if s >= as_of - {window} then\n" + "\n".join(updates) + "\n      end")
    outputs = [f"  out[{first + i}] = {_output(i, f)}" for i, f in enumerate(view.features)]
    return _VIEW.format(
        v=v,
        declare="".join(f", {n}" for n in stored),
        layout=layout.lua_format,
        legacy="\n".join(_legacy(view.value_columns, names, set(layout.numbers))),
        horizon=view.horizon_us,
        retention=view.horizon_us + view.lateness_us,
        ttl_ms=(view.horizon_us + 2 * view.lateness_us) // 1000,
        payload=2 + v,
        init="\n".join(init),
        windows="\n".join(windows),
        outputs="\n".join(outputs),
    )


def _legacy(columns: list[str], names: dict[str, str], numeric: set[str]) -> list[str]:
    """Lua that reads an event stored as text (``<time>\\x1f<value>\\x1f...``, values in ``columns`` order) into
    the same locals as the packed form: numbers as numbers (NaN for missing), texts as strings."""
    lines = ["      local at, stop = find(m, SEP, 1, true)", "      s = tonumber(sub(m, 1, at - 1))"]
    for k, column in enumerate(columns):
        value = "sub(m, at + 1)"
        if k < len(columns) - 1:
            lines.append("      stop = find(m, SEP, at + 1, true)")
            value = "sub(m, at + 1, stop - 1)"
        target = names[column]
        lines.append(f"      {target} = tonumber({value}) or NAN" if column in numeric else f"      {target} = {value}")
        if k < len(columns) - 1:
            lines.append("      at = stop")
    return lines


def _start(feature: WindowedFeature) -> str:
    return "false" if feature.function in ("max", "seconds_since_last") else "0"  # false: nothing seen yet


def _update(i: int, feature: WindowedFeature, x: str) -> str:
    """Lua updating feature ``i``'s accumulator with an event in its window; ``x`` is the local of its column
    (a number, NaN when missing, for sums and maxima; a string or a number for distinct counts)."""
    pad = "        "
    function = feature.function
    if function == "count":
        return f"{pad}a{i} = a{i} + 1"
    if function == "seconds_since_last":
        return f"{pad}if not a{i} or s > a{i} then a{i} = s end"
    if function == "sum":
        return f"{pad}if {x} == {x} then a{i} = a{i} + {x} end"
    if function == "max":
        return f"{pad}if {x} == {x} and (not a{i} or {x} > a{i}) then a{i} = {x} end"
    if function == "count_distinct":
        return f'{pad}if {x} == {x} and {x} ~= "" and not d{i}[{x}] then d{i}[{x}] = true; a{i} = a{i} + 1 end'
    raise ValueError(f"no Lua for aggregation function {function!r}")  # windows.py refuses unknown functions


def _output(i: int, feature: WindowedFeature) -> str:
    """The value sent back, a number; empty windows as declared (``false``: nothing seen)."""
    if feature.function in ("count", "count_distinct", "sum"):
        return f"a{i}"
    if feature.function == "seconds_since_last":
        return f"a{i} and (as_of - a{i}) / 1e6 or {feature.empty!r}"
    return f"a{i} or {feature.empty!r}"
