"""Admin routes carry the person in their path; logs must not."""

from __future__ import annotations

from papo_ingest.errors import loggable_path


def test_the_person_in_an_admin_path_is_replaced() -> None:
    path = "/admin/instances/loja/conversations/5511999990000@s.whatsapp.net/messages"
    assert loggable_path(path) == "/admin/instances/loja/conversations/{user}/messages"
    assert "5511999990000" not in loggable_path("/admin/instances/loja/conversations/5511999990000")


def test_other_paths_are_left_alone() -> None:
    assert loggable_path("/webhook/evolution") == "/webhook/evolution"
