"""The stream processors: the intake over the raw callback topics, the faust window agent."""
