"""The one client layer every teacher and judge model call goes through.

`client` talks to a backend (an OpenAI-compatible server or a local transformers model)
under concurrency, rate and budget limits with retries; `cache` keeps every answer,
content-addressed, so a rerun or a `dvc repro` asks nothing twice; `templates` renders
the prompts users edit; `judge` turns a committee's answers into one verdict.
"""


class LLMError(RuntimeError):
    """A model call that cannot go on (offline miss, budget spent, server unreachable);
    the message is one line saying what and which key or file to look at."""
