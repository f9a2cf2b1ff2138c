"""The resolution log budget: at most N lines a second, and an honest count of the lines it refused."""

from __future__ import annotations

from member.agent.events import LogBudget


def test_a_burst_logs_the_first_lines_of_each_second_and_counts_the_rest_once_the_second_is_over() -> None:
    budget = LogBudget(per_second=3)
    allowed = [budget.allow(10.0 + i * 0.01) for i in range(10)]  # ten events within one second
    assert allowed == [True] * 3 + [False] * 7
    assert budget.refused(10.5) == 0, "the count waits for the end of its second"
    assert budget.refused(11.0) == 7
    assert budget.refused(11.1) == 0, "counted once"
    assert [budget.allow(11.2), budget.allow(11.3)] == [True, True], "a new second, a new budget"


def test_a_quiet_node_logs_every_resolution() -> None:
    budget = LogBudget(per_second=3)
    assert all(budget.allow(100.0 + i) for i in range(20))  # one a second
    assert budget.refused(200.0) == 0


def test_refusals_of_several_seconds_add_up_until_they_are_reported() -> None:
    budget = LogBudget(per_second=1)
    assert [budget.allow(t) for t in (0.0, 0.1, 0.2, 1.0, 1.1)] == [True, False, False, True, False]
    assert budget.refused(2.5) == 3
