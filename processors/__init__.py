"""The stream processors: faust-streaming agents over the raw callback topics."""
