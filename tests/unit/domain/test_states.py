"""The state machine in ``codeqd.domain.states`` against the Lua scripts that apply it,
and each refusal against the HTTP error a client gets for it."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from codeqd.domain.errors import CodeqError
from codeqd.domain.states import (
    MAX_ATTEMPTS_ERROR,
    OUTCOMES,
    REFUSALS,
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    WEBHOOK_STATUSES,
    can,
    refusal_error,
)

LUA = resources.files("codeqd.store").joinpath("lua")
SCRIPTS = {
    p.name.removesuffix(".lua"): p.read_text()
    for p in LUA.iterdir()
    if p.name.endswith(".lua") and p.name != "_lib.lua"
}
# meta.status compared (== / ~=) or set (=) to a literal.
TASK_STATUS = re.compile(r"\bmeta\.status\s*(?:==|~=|=)\s*'([A-Z_]+)'")
# A local ``status`` (the outbox's callback status) set to a literal.
LOCAL_STATUS = re.compile(r"(?<![.\w])status\s*=\s*'([A-Z_]+)'")
# What a script answers: ``return {'CODE', ...}``, ``return 'CODE'``, or a batch's
# ``out[#out + 1] = {'CODE', ...}``.
ANSWER = re.compile(r"(?:\breturn\s*\{?|out\[#out \+ 1\]\s*=\s*\{)\s*'([A-Z_]+)'")
TASK_ERROR = re.compile(r"\bmeta\.error\s*=\s*'([A-Z_]+)'")


def answers(source: str) -> set[str]:
    return set(ANSWER.findall(source))


def test_the_scripts_are_read() -> None:
    assert {"claim", "retry", "result", "cancel", "heartbeat"} <= SCRIPTS.keys()
    assert answers(SCRIPTS["heartbeat"]) >= {"NOT_FOUND", "OK"}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_status_a_script_uses_is_declared(name: str) -> None:
    source = SCRIPTS[name]
    assert set(TASK_STATUS.findall(source)) <= set(STATUSES)
    assert set(LOCAL_STATUS.findall(source)) <= set(WEBHOOK_STATUSES)
    assert set(TASK_ERROR.findall(source)) <= {MAX_ATTEMPTS_ERROR}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_code_a_script_returns_is_declared(name: str) -> None:
    assert answers(SCRIPTS[name]) <= set(REFUSALS) | set(OUTCOMES)


@pytest.mark.parametrize(
    "name", sorted({s for t in TRANSITIONS.values() for s in t.scripts} & SCRIPTS.keys())
)
def test_a_scripts_refusals_are_those_of_its_transitions(name: str) -> None:
    declared = {r for t in TRANSITIONS.values() if name in t.scripts for r in t.refusals}
    assert answers(SCRIPTS[name]) & set(REFUSALS) == declared


def test_every_transition_names_scripts_that_exist() -> None:
    for t in TRANSITIONS.values():
        assert t.scripts and set(t.scripts) <= SCRIPTS.keys(), t.name
        assert set(t.refusals) <= REFUSALS.keys(), t.name


@pytest.mark.parametrize("name", ["claim", "cancel", "retry", "replay"])
def test_the_statuses_a_script_sets_are_its_transitions_targets(name: str) -> None:
    sets = set(re.findall(r"\bmeta\.status\s*=\s*'([A-Z_]+)'", SCRIPTS[name]))
    targets = {s for t in TRANSITIONS.values() if name in t.scripts for s in t.targets}
    assert sets and sets <= targets


def test_the_transitions_the_brief_names() -> None:
    assert set(TRANSITIONS) >= {
        "create",
        "claim",
        "heartbeat",
        "nack",
        "abandon",
        "release",
        "result",
        "expire",
        "promote",
        "cancel",
        "replay",
        "purge",
    }


@pytest.mark.parametrize(
    ("transition", "allowed"),
    [
        ("create", {None}),
        ("claim", {"PENDING"}),
        ("result", {"IN_PROGRESS"}),
        ("heartbeat", {"IN_PROGRESS"}),
        ("cancel", {"PENDING", "IN_PROGRESS"}),
        ("replay", {"FAILED"}),
    ],
)
def test_can(transition: str, allowed: set[str | None]) -> None:
    for status in (None, *STATUSES):
        assert can(transition, status) == (status in allowed)  # type: ignore[arg-type]


def test_terminal_states_only_leave_by_deletion_or_replay() -> None:
    for t in TRANSITIONS.values():
        if t.sources & TERMINAL:
            assert t.name in ("cleanup", "purge", "replay"), t.name


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_each_refusal_renders_as_documented(code: str) -> None:
    err = refusal_error(code, "t-1", ["COMPLETED"])
    assert isinstance(err, CodeqError)
    body = err.body()
    assert (err.status, body["code"]) == (REFUSALS[code].status, REFUSALS[code].code)
    assert "t-1" in body["error"]


def test_not_in_progress_names_the_status() -> None:
    running = refusal_error("NOT_IN_PROGRESS", "t-1", ["PENDING"])
    assert running.message == "task t-1 is PENDING, not IN_PROGRESS"
    assert running.details == {"status": "PENDING"}
    done = refusal_error("NOT_IN_PROGRESS", "t-1", ["FAILED"])
    assert done.message == "task t-1 is already FAILED"
    assert refusal_error("NOT_IN_PROGRESS", "t-1", []).details == {"status": "unknown"}


def test_terminal_names_the_status() -> None:
    assert refusal_error("TERMINAL", "t-1", ["CANCELLED"]).message == (
        "task t-1 is already CANCELLED"
    )


def test_an_unknown_code_is_a_conflict_naming_it() -> None:
    err = refusal_error("SOMETHING_NEW", "t-1", [])
    assert (err.status, err.code, err.message) == (409, "conflict", "task t-1: SOMETHING_NEW")
