"""The errors a person can act on: each message is one line naming the file, row or key
and what is wrong. A stage turns any of them into that line on stderr and exit status 2
(flywheel/stage.py); the kinds (`ConfigError`, `DataError`, `LLMError`, `StudentError`)
live beside the code that raises them."""


class FlywheelError(Exception):
    """Bad configuration, data, model answers or student; the message is one line."""
