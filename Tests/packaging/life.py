"""The nginx.conf in which the packaging tests walk a session's life: one
worker, notice-level error log, a manager location with session id
injection in front of the engine stub. `loads` is what loads the module
(an include of modules-enabled, or load_module lines)."""


def life_conf(loads, prefix, sessions, port, engine_port):
    return f"""
{loads}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    sagemaker_sessions on;
    sagemaker_sessions_path {sessions};
    server {{
        listen 127.0.0.1:{port};
        location = /invocations {{
            sagemaker_session_manager session_id_path=session_id;
            proxy_pass http://127.0.0.1:{engine_port};
        }}
    }}
}}
"""
