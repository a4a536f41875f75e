"""The campaign simulator: a seeded campaign's callbacks, the ground truth they add up
to, and the load sender that posts them to an edge (`switchboard simulate`, tests and
`bench/`)."""
