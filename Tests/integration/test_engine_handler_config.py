"""SPEC §2 (engine handler part): the four directives, their environment
variables, and `nginx -t` failures naming the directive or variable."""

import json

import pytest

from harness import assert_emerg, Nginx

CREATE_ENV = "SAGEMAKER_TRANSFORMS_CREATE_SESSION_DEFAULTS"
CLOSE_ENV = "SAGEMAKER_TRANSFORMS_CLOSE_SESSION_DEFAULTS"
INTERNAL = """
location = /engine/create_session { internal; proxy_pass http://engine; }
location = /engine/close_session { internal; proxy_pass http://engine; }
"""
HANDLERS = ("sagemaker_session_create_handler /engine/create_session body.session_id; "
            "sagemaker_session_close_handler /engine/close_session body.session_id;")


def nginx_t(http="", location="sagemaker_session_manager; " + HANDLERS, server=INTERNAL, env=None):
    n = Nginx(1, http=http, location=location, server=server, env=env, sessions=False)
    return n.test_config()


def assert_ok(result):
    code, out = result
    assert code == 0, out
    assert "test is successful" in out, out



def q(value):
    """A defaults value quoted for nginx.conf."""
    return "'" + value + "'"


# --- good configurations ------------------------------------------------------

def test_all_four_directives_at_location_level():
    assert_ok(nginx_t(location="sagemaker_session_manager; " + HANDLERS +
                      """ sagemaker_session_create_defaults '{"body.capacity": 1024, "body.meta.size": 3}';"""
                      """ sagemaker_session_close_defaults '{"body.force": false}';"""))


def test_all_four_directives_at_http_and_server_level():
    http = (HANDLERS + """ sagemaker_session_create_defaults '{"body.capacity": 1024}';"""
            """ sagemaker_session_close_defaults '{}';""")
    assert_ok(nginx_t(http=http, location="sagemaker_session_manager;"))
    assert_ok(nginx_t(server=INTERNAL + http, location="sagemaker_session_manager;"))


@pytest.mark.parametrize("path", [
    "body", "body.session_id", "body.data.id", 'headers."X-Session-Id"', "headers.X-Session-Id",
    "headers.x-session-id", 'body."session.id"', 'body.a."b.c".d', "status_code"])
def test_create_response_paths_accepted(path):
    assert_ok(nginx_t(location=f"sagemaker_session_manager; sagemaker_session_create_handler /engine/create_session '{path}';"))


@pytest.mark.parametrize("path", ["body.session_id", "body.id", "body.metadata.session_id", 'body."a.b"'])
def test_close_request_paths_accepted(path):
    assert_ok(nginx_t(location=f"sagemaker_session_manager; sagemaker_session_close_handler /engine/close_session '{path}';"))


@pytest.mark.parametrize("value", ['{}', '{"body.x": null}', '{"body.l": [1, {"a": "b"}], "body.o": {"k": 1}}',
                                   '{"body.\\"a.b\\"": 1}', '  {"body.capacity_of_str_len": 1024}  '])
def test_good_defaults_from_env(value):
    assert_ok(nginx_t(env={CREATE_ENV: value, CLOSE_ENV: value}))


def test_directive_overrides_a_good_env():
    assert_ok(nginx_t(location="sagemaker_session_manager; " + HANDLERS +
                      """ sagemaker_session_create_defaults '{"body.a": 1}';""",
                      env={CREATE_ENV: '{"body.b": 2}'}))


# --- bad defaults ---------------------------------------------------------------

BAD_JSON = ['{bad', '{"body.x": }', '{"body.x": 1', 'capacity: 1024', '', '{"body.x": 1} trailing']
NOT_BODY = ['{"capacity": 1024}', '{"headers.x": "y"}', '{"body": {"x": 1}}', '{"bodyx.y": 1}',
            '{"body.ok": 1, "other.bad": 2}']
NOT_OBJECT = ['[1, 2]', '"body.x"', '1024', 'null', 'true']
BAD_PATH = ['{"body..x": 1}', '{"": 1}', '{"body.": 1}', '{"body.\\"a": 1}', '{".body.x": 1}']


@pytest.mark.parametrize("directive", ["sagemaker_session_create_defaults", "sagemaker_session_close_defaults"])
@pytest.mark.parametrize("value", BAD_JSON + NOT_BODY + NOT_OBJECT + BAD_PATH)
def test_bad_defaults_directive(directive, value):
    assert_emerg(nginx_t(location="sagemaker_session_manager; " + HANDLERS + f" {directive} {q(value)};"),
                 directive)


@pytest.mark.parametrize("directive", ["sagemaker_session_create_defaults", "sagemaker_session_close_defaults"])
def test_bad_defaults_directive_at_http_and_server_level(directive):
    assert_emerg(nginx_t(http=f"{directive} '{{bad';"), directive)
    assert_emerg(nginx_t(server=INTERNAL + f"""{directive} '{{"capacity": 1}}';"""), directive)


@pytest.mark.parametrize("variable", [CREATE_ENV, CLOSE_ENV])
@pytest.mark.parametrize("value", BAD_JSON + NOT_BODY + NOT_OBJECT + BAD_PATH)
def test_bad_defaults_env(variable, value):
    assert_emerg(nginx_t(env={variable: value}), variable)


def test_bad_defaults_named_in_the_message():
    code, out = nginx_t(location="sagemaker_session_manager; " + HANDLERS +
                        """ sagemaker_session_create_defaults '{"capacity": 1024}';""")
    line = next(l for l in out.splitlines() if "[emerg]" in l)
    assert "capacity" in line and "body." in line, line


# --- bad handlers -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["", "body..x", "body.", ".body", 'body."x', 'body."', "a..b"])
def test_bad_create_response_path(path):
    directive = "sagemaker_session_create_handler"
    assert_emerg(nginx_t(location=f"sagemaker_session_manager; {directive} /engine/create_session '{path}';"),
                 directive)


@pytest.mark.parametrize("path", ["", "body..x", "body.", 'body."x', "session_id", "headers.x",
                                  "status_code", "body", "bodyx.y"])
def test_bad_close_request_path(path):
    directive = "sagemaker_session_close_handler"
    assert_emerg(nginx_t(location=f"sagemaker_session_manager; {directive} /engine/close_session '{path}';"),
                 directive)


@pytest.mark.parametrize("directive, path", [("sagemaker_session_create_handler", "body.session_id"),
                                             ("sagemaker_session_close_handler", "body.session_id")])
def test_handler_uri_missing(directive, path):
    assert_emerg(nginx_t(location=f"sagemaker_session_manager; {directive} {path};"), directive)
    assert_emerg(nginx_t(location=f"sagemaker_session_manager; {directive};"), directive)
    assert_emerg(nginx_t(location=f"sagemaker_session_manager; {directive} '' {path};"), directive)


def test_handler_with_too_many_arguments():
    assert_emerg(nginx_t(location="sagemaker_session_manager; sagemaker_session_create_handler "
                                  "/engine/create_session body.session_id extra;"),
                 "sagemaker_session_create_handler")


@pytest.mark.parametrize("directive", ["sagemaker_session_create_defaults", "sagemaker_session_close_defaults"])
def test_defaults_directive_needs_one_argument(directive):
    assert_emerg(nginx_t(location=f"sagemaker_session_manager; {directive};"), directive)
    assert_emerg(nginx_t(location=f"""sagemaker_session_manager; {directive} '{{}}' '{{}}';"""), directive)


def test_create_defaults_value_is_the_documented_example():
    # the example from the seeds' docs, written as in nginx.conf
    value = json.dumps({"body.capacity": 1024, "body.timeout": 30})
    assert_ok(nginx_t(location="sagemaker_session_manager; " + HANDLERS +
                      f" sagemaker_session_create_defaults '{value}';"))
