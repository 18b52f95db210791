"""Long context: needle-in-a-haystack tasks on an offline haystack (docs/long-context.md)."""
