"""The stand-in accepts what a site accepts for people made through the API: a HumanUser created
with ``password_proxy`` (as the official client's own tests do) logs in with its login and that
password, can be impersonated with ``sudo_as_login``, and stops logging in once retired or
disabled. The real client over real HTTP against the stand-in.
"""

from __future__ import annotations

import pytest
import shotgun_api3


def login(server, user: str, password: str) -> shotgun_api3.Shotgun:
    return shotgun_api3.Shotgun(server.url, login=user, password=password)


@pytest.fixture
def made(sg):
    return sg.create("HumanUser", {"login": "api_made", "name": "Api Made", "password_proxy": "s3cret!"})


def test_a_person_created_with_password_proxy_logs_in_with_it(mock_server, made):
    person = login(mock_server, "api_made", "s3cret!")
    assert person.find_one("HumanUser", [["id", "is", made["id"]]], ["login"])["login"] == "api_made"


def test_the_password_is_never_returned_stored_or_logged(sg, made):
    assert "password_proxy" not in made
    assert sg.find_one("HumanUser", [["id", "is", made["id"]]], ["password_proxy"]).get("password_proxy") is None
    events = sg.find("EventLogEntry", [["entity", "is", {"type": "HumanUser", "id": made["id"]}]],
                     ["attribute_name", "meta"])
    assert events and all(e["attribute_name"] != "password_proxy" for e in events)
    assert "s3cret!" not in repr(events)


def test_a_wrong_password_is_refused(mock_server, made):
    with pytest.raises(shotgun_api3.AuthenticationFault):
        login(mock_server, "api_made", "wrong").find("Project", [])


def test_a_script_can_sudo_as_a_person_created_through_the_api(mock_server, made):
    from conftest import SCRIPT_AUTH

    sudo = shotgun_api3.Shotgun(mock_server.url, sudo_as_login="api_made", **SCRIPT_AUTH)
    note = sudo.create("Note", {"subject": "as api_made"}, ["created_by"])
    assert note["created_by"]["id"] == made["id"]


def test_a_new_password_replaces_the_old_one(sg, mock_server, made):
    sg.update("HumanUser", made["id"], {"password_proxy": "n3w-one"})
    assert login(mock_server, "api_made", "n3w-one").find("Project", []) is not None
    with pytest.raises(shotgun_api3.AuthenticationFault):
        login(mock_server, "api_made", "s3cret!").find("Project", [])


def test_a_new_login_replaces_the_old_one(sg, mock_server, made):
    sg.update("HumanUser", made["id"], {"login": "renamed"})
    assert login(mock_server, "renamed", "s3cret!").find("Project", []) is not None
    with pytest.raises(shotgun_api3.AuthenticationFault):
        login(mock_server, "api_made", "s3cret!").find("Project", [])


@pytest.mark.parametrize("how", ["retired", "disabled"])
def test_a_retired_or_disabled_person_can_no_longer_log_in_or_be_impersonated(sg, mock_server, made, how):
    from conftest import SCRIPT_AUTH

    if how == "retired":
        sg.delete("HumanUser", made["id"])
    else:
        sg.update("HumanUser", made["id"], {"sg_status_list": "dis"})
    with pytest.raises(shotgun_api3.AuthenticationFault):
        login(mock_server, "api_made", "s3cret!").find("Project", [])
    with pytest.raises(shotgun_api3.Fault):
        shotgun_api3.Shotgun(mock_server.url, sudo_as_login="api_made", **SCRIPT_AUTH).find("Project", [])


@pytest.mark.parametrize("value", [None, "", 42, ["x"]])
def test_a_password_that_is_not_a_non_empty_string_is_a_clear_fault(sg, value):
    with pytest.raises(shotgun_api3.Fault, match="password_proxy must be a non-empty string"):
        sg.create("HumanUser", {"login": "bad_pw", "name": "Bad", "password_proxy": value})
    assert sg.find("HumanUser", [["login", "is", "bad_pw"]]) == []


def test_a_restricted_person_may_not_set_passwords(sg, mock_server, made):
    artist = login(mock_server, "artist", "artist-password")
    with pytest.raises(shotgun_api3.Fault, match="password_proxy is not editable"):
        artist.update("HumanUser", made["id"], {"password_proxy": "hijack"})
