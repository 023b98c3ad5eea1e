"""`agentgym doctor` finds each family's own checks through entry points, reports a runtime several
families share once, and reports a family whose checks are broken instead of crashing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

from agentgym.doctor import ENTRY_POINT_GROUP, Check, family_checks, report, run_checks


@dataclass
class _FakeEntryPoint:
    name: str
    function: Callable[[], Any]
    value: str = "tests:fake"

    def load(self):
        return self.function


def test_installed_families_declare_their_checks_and_shared_runtimes_appear_once():
    checks = {check.name: check for check in family_checks()}
    assert checks["python: textworld"].families == ("textworld",)
    assert checks["java"].families == ("scienceworld", "textworld_express")
    assert checks["chromium"].families == ("gui", "web") and checks["python: playwright"].families == ("gui", "web")
    assert checks["Font Awesome"].families == ("gui",) and "python: pettingzoo" in checks
    names = [check.name for check in run_checks()]
    assert len(names) == len(set(names))
    assert names[:4] == ["python", "python: gymnasium", "cache folder", "env registry"]  # the core's own
    assert {"python: torch", "python: transformers", "python: openai", "python: fastapi"} <= set(names)


def test_a_broken_family_check_is_reported_not_raised():
    def missing_java():
        return [Check("java", False, "not found", "sudo apt-get install -y default-jre-headless")]

    def raises():
        raise RuntimeError("probe exploded")

    entry_points = [
        _FakeEntryPoint("jvm_game", lambda: [Check("java", True, "Java 17 at /usr/bin/java")]),
        _FakeEntryPoint("other_jvm_game", missing_java),
        _FakeEntryPoint("exploding", raises),
        _FakeEntryPoint("junk", lambda: ["not a check"]),
        EntryPoint("unloadable", "agentgym.no_such_module:doctor_checks", ENTRY_POINT_GROUP),
    ]
    checks = {check.name: check for check in family_checks(entry_points)}
    # The shared runtime is one line naming both families; where they disagree, the failure is kept.
    assert not checks["java"].ok and checks["java"].families == ("jvm_game", "other_jvm_game")
    assert "RuntimeError: probe exploded" in checks["checks of exploding"].detail
    assert "must return a list of agentgym.doctor.Check" in checks["checks of junk"].detail
    assert "ModuleNotFoundError" in checks["checks of unloadable"].detail
    assert "agentgym.no_such_module:doctor_checks" in checks["checks of unloadable"].fix
    text, healthy = report([Check("python", True, "3.11", required=True), *checks.values()])
    assert healthy  # family checks are optional: the core still runs
    assert "needed by: jvm_game, other_jvm_game" in text and "fix: sudo apt-get install -y default-jre-headless" in text
