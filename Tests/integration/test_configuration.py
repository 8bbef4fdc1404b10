"""SPEC §2: directives, environment variables, defaults, and `nginx -t`."""

import os
import re
import subprocess
import time

import pytest

from harness import assert_emerg, error_log_args, MODULE, NGINX, ROOT, SESSION, Nginx, close_session, new_session, workdir


def expires_in(ngx):
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 200, r
    sid, expires = re.fullmatch(r"(\S+); Expires=(\S+)", r.header("X-Amzn-SageMaker-New-Session-Id")).groups()
    t = time.mktime(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime(0))
    return sid, t - time.time()


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1"])
def test_env_enables_sessions(start_nginx, value):
    d = workdir()
    ngx = start_nginx(sessions=False, http=f"sagemaker_sessions_path {d}/s;",
                      env={"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": value})
    sid = new_session(ngx)
    assert os.path.isdir(f"{d}/s/{sid}")


@pytest.mark.parametrize("value", ["false", "0", "yes", "on", ""])
def test_env_other_values_leave_sessions_off(start_nginx, value):
    ngx = start_nginx(sessions=False, env={"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": value})
    r = ngx.request({"requestType": "NEW_SESSION"})
    assert r.status == 400
    assert r.json()["detail"] == "Invalid payload. stateful sessions not enabled"


def test_directive_off_overrides_env(start_nginx):
    ngx = start_nginx(sessions=False, http="sagemaker_sessions off;",
                      env={"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true"})
    assert ngx.request({"requestType": "NEW_SESSION"}).status == 400


def test_env_path_and_directive_override(start_nginx):
    d = workdir()
    ngx = start_nginx(sessions=False, http="sagemaker_sessions on;",
                      env={"SAGEMAKER_SESSIONS_PATH": f"{d}/from-env"})
    sid = new_session(ngx)
    assert os.path.isdir(f"{d}/from-env/{sid}")
    ngx = start_nginx(sessions=False, http=f"sagemaker_sessions on; sagemaker_sessions_path {d}/from-directive;",
                      env={"SAGEMAKER_SESSIONS_PATH": f"{d}/from-env"})
    sid = new_session(ngx)
    assert os.path.isdir(f"{d}/from-directive/{sid}")
    assert not os.path.exists(f"{d}/from-env/{sid}")


def test_nested_missing_path_is_created_for_the_workers(start_nginx):
    d = workdir()
    path = f"{d}/a/b/c"
    ngx = start_nginx(sessions=False, http=f"sagemaker_sessions on; sagemaker_sessions_path {path};")
    sid = new_session(ngx)  # workers (nobody) could write there
    st = os.stat(path)
    assert os.path.isdir(f"{path}/{sid}")
    assert os.stat(f"{path}/{sid}").st_uid == st.st_uid


def test_expiration_from_env_and_directive(start_nginx):
    ngx = start_nginx(env={"SAGEMAKER_SESSIONS_EXPIRATION": "60"})
    _, left = expires_in(ngx)
    assert 55 <= left <= 61
    ngx = start_nginx(http="sagemaker_sessions_expiration 2m;",
                      env={"SAGEMAKER_SESSIONS_EXPIRATION": "60"})
    _, left = expires_in(ngx)
    assert 115 <= left <= 121
    ngx = start_nginx()
    _, left = expires_in(ngx)
    assert 1195 <= left <= 1201


def test_default_path_is_dev_shm(start_nginx):
    ngx = start_nginx(sessions=False, http="sagemaker_sessions on;")
    sid = new_session(ngx)
    try:
        assert os.path.isdir(f"/dev/shm/sagemaker_sessions/{sid}")
    finally:
        assert close_session(ngx, sid).status == 200


def test_unusable_path_falls_back_to_tmpdir_with_warning(start_nginx):
    d = workdir()
    with open(f"{d}/file", "w"):
        pass
    tmp = f"{d}/tmp"
    os.makedirs(tmp)
    os.chmod(tmp, 0o755)
    ngx = start_nginx(sessions=False, http=f"sagemaker_sessions on; sagemaker_sessions_path {d}/file/sessions;",
                      env={"TMPDIR": tmp})
    sid = new_session(ngx)
    assert os.path.isdir(f"{tmp}/sagemaker_sessions/{sid}")
    log = ngx.error_log
    assert re.search(r"\[warn\].*sagemaker sessions: sessions path \"%s/file/sessions\" is not usable.*falling back to \"%s/sagemaker_sessions\"" % (re.escape(d), re.escape(tmp)), log), log


def nginx_t(http="", location="sagemaker_session_manager;", env=None):
    n = Nginx(1, http=http, location=location, env=env, sessions=False)
    return n.test_config()



def test_good_config_passes_nginx_t():
    code, out = nginx_t(http="sagemaker_sessions on; sagemaker_sessions_expiration 20m;",
                        location="sagemaker_session_manager session_id_path=metadata.\"session.id\";")
    assert code == 0, out
    assert "test is successful" in out


@pytest.mark.parametrize("value", ["0", "0s", "abc", "-5", "1x", "400000y"])
def test_bad_expiration_directive(value):
    named = value if value != "400000y" else "10 years"
    assert_emerg(nginx_t(http=f"sagemaker_sessions_expiration {value};"),
                 "sagemaker_sessions_expiration", named)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", "20m", "", "10000000000000"])
def test_bad_expiration_env(value):
    assert_emerg(nginx_t(http="sagemaker_sessions on;", env={"SAGEMAKER_SESSIONS_EXPIRATION": value}),
                 "SAGEMAKER_SESSIONS_EXPIRATION")


def test_bad_path_directive():
    assert_emerg(nginx_t(http='sagemaker_sessions_path "";'), "sagemaker_sessions_path")
    assert_emerg(nginx_t(http="sagemaker_sessions_path relative/dir;"), "sagemaker_sessions_path", "relative/dir")


@pytest.mark.parametrize("value", ["", "relative/dir"])
def test_bad_path_env(value):
    assert_emerg(nginx_t(http="sagemaker_sessions on;", env={"SAGEMAKER_SESSIONS_PATH": value}),
                 "SAGEMAKER_SESSIONS_PATH")


def test_unusable_path_and_fallback_fail_nginx_t():
    d = workdir()
    with open(f"{d}/file", "w"):
        pass
    assert_emerg(nginx_t(http=f"sagemaker_sessions on; sagemaker_sessions_path {d}/file/s;",
                         env={"TMPDIR": f"{d}/file"}),
                 f"{d}/file/s", "fallback")


@pytest.mark.parametrize("param", ["session_id_path=", "session_id_path=a..b", "session_id_path=.a",
                                   "session_id_path=a.", 'session_id_path="a', "path=a", "session_id"])
def test_bad_session_manager_parameter(param):
    assert_emerg(nginx_t(location=f"sagemaker_session_manager '{param}';"), "sagemaker_session_manager")


def test_bad_flag_and_misplaced_directives():
    assert_emerg(nginx_t(http="sagemaker_sessions maybe;"), "sagemaker_sessions")
    assert_emerg(nginx_t(location="sagemaker_session_manager; sagemaker_sessions on;"), "sagemaker_sessions")
    assert_emerg(nginx_t(location="sagemaker_session_manager; sagemaker_session_manager;"),
                 "sagemaker_session_manager", "duplicate")


def test_example_config_passes_nginx_t():
    d = workdir()
    with open(os.path.join(ROOT, "nginx", "example.conf")) as f:
        conf = f.read()
    conf = re.sub(r"load_module \S+;", f"load_module {MODULE};", conf)
    conf = conf.replace("/var/log/nginx/error.log", f"{d}/error.log")
    conf = conf.replace("/run/nginx-sagemaker.pid", f"{d}/nginx.pid")
    conf = conf.replace("/dev/shm/sagemaker_sessions", f"{d}/sessions")
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(conf)
    p = subprocess.run([NGINX, "-t", "-p", d, "-c", f"{d}/nginx.conf", *error_log_args(d)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "test is successful" in p.stderr


@pytest.mark.parametrize("value", ["0", "-1", "many", "99999999999"])
def test_bad_sessions_max(value):
    assert_emerg(nginx_t(http=f"sagemaker_sessions_max {value};"), "sagemaker_sessions_max")
