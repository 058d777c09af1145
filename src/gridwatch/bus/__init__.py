"""The durable bus: topics of envelope lines, consumer groups with committed offsets."""

from gridwatch.bus.base import Bus, Entry, GroupState, Slice, TopicInfo
from gridwatch.bus.sqlite import SqliteBus

__all__ = ["Bus", "Entry", "GroupState", "Slice", "SqliteBus", "TopicInfo"]
