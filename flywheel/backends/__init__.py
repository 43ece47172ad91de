"""The teacher and judge backends: the one client layer every model call goes through.

`client` talks to a backend (an OpenAI-compatible server or a local transformers model)
under concurrency, rate and budget limits with retries; `cache` keeps every answer,
content-addressed, so a rerun or a `dvc repro` asks nothing twice; `session` is one
stage run's calls (its cache slice, budget and report); `templates` renders the prompts
users edit; `committee` turns a committee's answers into one verdict.
"""

from flywheel.errors import FlywheelError


class LLMError(FlywheelError, RuntimeError):
    """A model call that cannot go on (offline miss, budget spent, server unreachable);
    the message is one line saying what and which key or file to look at."""
