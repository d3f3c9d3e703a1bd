"""The "what" of codeqd, pure: the task state machine (``states``), validation of what
clients send (``task``, ``report``, ``artifacts``, ``subscription``), what the store
keeps (``records``), retry and callback timing (``backoff``, ``callbacks``), ids and
the errors every layer raises.

Nothing here does I/O or imports trio, the store client or the web framework
(``make lint`` checks it: ``lint-imports``).
"""
