"""The seed's SMS tracker and inbound-call app, as the seed wrote them, for the baseline."""
