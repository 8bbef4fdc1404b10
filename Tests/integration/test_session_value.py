"""set_sagemaker_session_value $var KEY: the value the engine stored under KEY
with the Python library's own Session class, read into an nginx variable."""

import json
import os

import pytest
from model_hosting_container_standards.sagemaker.sessions.manager import Session

from harness import SESSION, Engine, Nginx, assert_emerg, close_session, new_session

VALUES = ("set_sagemaker_session_value $adapter lora/adapter; "
          "set_sagemaker_session_value $config config; "
          "add_header X-Adapter $adapter always; add_header X-Config $config always; "
          "proxy_set_header X-Adapter $adapter; ")


def start(start_nginx, location="sagemaker_session_manager; " + VALUES, **kw):
    return start_nginx(ndk=True, location=location, **kw)


def values(r):
    return r.header("X-Adapter"), r.header("X-Config")


def test_values_written_by_the_library_session_class(start_nginx, engine):
    ngx = start(start_nginx)
    sid = new_session(ngx)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200 and values(r) == (None, None), r      # no such keys yet: empty
    session = Session(sid, ngx.sessions_path)
    session.put("lora/adapter", "tenant-a/lora-7")
    session.put("config", {"temperature": 0.5, "tags": ["a", "b"], "name": "x\ny"})
    assert os.path.exists(os.path.join(ngx.sessions_path, sid, "lora-adapter"))
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200, r
    assert r.header("X-Adapter") == "tenant-a/lora-7"
    assert json.loads(r.header("X-Config")) == {"temperature": 0.5, "tags": ["a", "b"], "name": "x\ny"}
    assert "\n" not in r.header("X-Config")
    assert engine.last["headers"]["x-adapter"] == "tenant-a/lora-7"
    for value, text in ((42, "42"), (True, "true"), (None, "null"), ("", None), ([1, "z"], '[1,"z"]')):
        session.put("lora/adapter", value)
        assert ngx.request({"p": 1}, {SESSION: sid}).header("X-Adapter") == text, value
    # a string holding control characters gives nothing: the value may go into a header
    session.put("lora/adapter", "a\r\nX-Injected: 1")
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.header("X-Adapter") is None and r.header("X-Injected") is None, r
    # no session, an unknown one, a closed one: empty
    session.put("lora/adapter", "tenant-a/lora-7")
    assert values(ngx.request({"p": 1})) == (None, None)
    # read in the rewrite phase: the CLOSE itself still sees its session
    assert close_session(ngx, sid).header("X-Adapter") == "tenant-a/lora-7"
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 400 and values(r) == (None, None), r


def test_files_read_with_care(start_nginx):
    """No symbolic link followed, no file over 64 KiB, no FIFO waited on: empty, with a [warn]."""
    ngx = start(start_nginx)
    sid = new_session(ngx)
    session = Session(sid, ngx.sessions_path)
    directory = os.path.join(ngx.sessions_path, sid)
    secret = os.path.join(ngx.dir, "secret.json")
    with open(secret, "w") as f:
        json.dump("secret", f)
    os.symlink(secret, os.path.join(directory, "lora-adapter"))
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200 and r.header("X-Adapter") is None, r
    assert "symbolic link" in ngx.error_log
    session.put("config", "x" * 70000)
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200 and r.header("X-Config") is None, r
    assert "larger than 65536 bytes" in ngx.error_log
    os.remove(os.path.join(directory, "config"))
    os.mkfifo(os.path.join(directory, "config"))
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200 and r.header("X-Config") is None, r
    with open(os.path.join(directory, "lora-adapter.tmp"), "w") as f:
        f.write("{not json")
    os.remove(os.path.join(directory, "lora-adapter"))
    os.rename(os.path.join(directory, "lora-adapter.tmp"), os.path.join(directory, "lora-adapter"))
    r = ngx.request({"p": 1}, {SESSION: sid})
    assert r.status == 200 and r.header("X-Adapter") is None, r
    assert "is not JSON" in ngx.error_log
    assert not ngx.crashes()


@pytest.mark.parametrize("key, words", [
    ("../etc/passwd", ['".."']),
    ("a..b", ['".."']),
    ("/etc/passwd", ['"/"']),
    (".", ["directory"]),
    ("''", ["empty"]),
    ("lora$x", ["variables"]),
    ("k" * 256, ["255"]),
])
def test_hostile_keys_are_refused_at_nginx_t(engine, key, words):
    n = Nginx(engine.port, ndk=True, location=f"sagemaker_session_manager; set_sagemaker_session_value $v {key};")
    assert_emerg(n.test_config(), "set_sagemaker_session_value", "invalid key", *words)


def test_bad_variable_name_and_arguments(engine):
    n = Nginx(engine.port, ndk=True, location="set_sagemaker_session_value v key;")
    assert_emerg(n.test_config(), "set_sagemaker_session_value", "invalid variable name")
    n = Nginx(engine.port, ndk=True, location="set_sagemaker_session_value $v;")
    assert_emerg(n.test_config(), "set_sagemaker_session_value", "number of arguments")


def test_without_ndk_the_directive_names_what_is_missing(engine):
    """The module loads without NDK (every other test loads none); only
    the directive needs it, and says so."""
    n = Nginx(engine.port, location="set_sagemaker_session_value $v key;")
    assert_emerg(n.test_config(), "set_sagemaker_session_value", "ndk_http_module.so")


def test_with_ndk_loaded_first_everything_else_works(start_nginx):
    ngx = start_nginx(ndk=True)
    sid = new_session(ngx)
    assert ngx.request({"p": 1}, {SESSION: sid}).status == 200
    assert close_session(ngx, sid).status == 200


def test_a_session_sent_to_the_upstream_of_its_lora_adapter(start_nginx, engine):
    """The docs' example: map the adapter to an upstream, proxy_pass to it."""
    other = Engine()
    try:
        ngx = start_nginx(ndk=True,
                          http=f"upstream adapters_b {{ server 127.0.0.1:{other.port}; }}\n"
                               "map $adapter $backend { default engine; lora-b adapters_b; }",
                          server="location /routed { sagemaker_session_manager; "
                                 "set_sagemaker_session_value $adapter adapter; proxy_pass http://$backend; }")
        a, b = new_session(ngx), new_session(ngx)
        Session(b, ngx.sessions_path).put("adapter", "lora-b")
        assert ngx.request({"p": 1}, {SESSION: a}, path="/routed").status == 200
        assert ngx.request({"p": 2}, {SESSION: b}, path="/routed").status == 200
        assert [json.loads(r["body"]) for r in other.to("/routed")] == [{"p": 2}]
        assert json.loads(engine.to("/routed")[-1]["body"]) == {"p": 1}
    finally:
        other.stop()
