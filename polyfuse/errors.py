"""The one exception type users see: its message is a single line naming the culprit."""


class PolyfuseError(Exception):
    """A user-facing error: bad config, malformed record, unusable model output."""
