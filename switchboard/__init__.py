"""The `switchboard` command line and local orchestration of the stages."""
