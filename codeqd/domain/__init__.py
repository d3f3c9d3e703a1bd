"""Pure domain logic: task states, validation, backoff, ids and errors.

Nothing here does I/O or imports trio or the store client.
"""
