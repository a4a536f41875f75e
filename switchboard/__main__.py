from runtime.signals import stop_cleanly_while_starting

stop_cleanly_while_starting()  # before the imports: they are a second of the start-up

from switchboard.cli import main  # noqa: E402

main()
