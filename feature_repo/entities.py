"""Entities: the keys features hang off."""

from feast import Entity, ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A customer account.")
device = Entity(
    name="device",
    join_keys=["device_id"],
    value_type=ValueType.INT64,
    description="A phone, tablet or computer.",
)
merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="Where the card was used.",
)
