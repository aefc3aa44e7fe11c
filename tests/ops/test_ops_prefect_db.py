"""The Prefect server's database URL (ops/prefect_db.py, ops/prefect_local.py): a wrong password, host or
scheme is one line before any server starts, and the password is never printed. The server on Postgres
itself runs in the deployment check (test_ops_deployment.py)."""

from __future__ import annotations

import pytest

from ops import prefect_local
from ops.prefect_db import server_db_url
from ops.prefect_local import LocalPrefect, OpsError, free_port


def _with_password(url: str, password: str) -> str:
    user_pw, host = url.split("//", 1)[1].split("@", 1)
    return f"postgresql://{user_pw.split(':')[0]}:{password}@{host}"


def test_a_wrong_password_is_one_line_without_the_password(tmp_path, local_postgres):
    wrong = "not-the-" + local_postgres.password
    lp = LocalPrefect(home=tmp_path / "home", db_url=_with_password(local_postgres.url, wrong))
    with pytest.raises(OpsError) as err:
        lp.start_server()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot connect to the Prefect database at postgresql+asyncpg://picaco:***@127.0.0.1:")
    assert "password authentication failed" in message
    assert wrong not in message and local_postgres.password not in message
    assert lp.server is None, "no server is started on a database it cannot log in to"
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in lp.env, "only the server process gets the URL"


def test_a_closed_port_and_a_wrong_scheme_are_one_line(tmp_path, local_postgres):
    closed = local_postgres.url.replace(f":{local_postgres.port}/", f":{free_port()}/")
    with pytest.raises(OpsError) as err:
        LocalPrefect(home=tmp_path / "a", db_url=closed).start_server()
    assert "\n" not in str(err.value) and "cannot connect to the Prefect database" in str(err.value)
    assert local_postgres.password not in str(err.value)
    with pytest.raises(OpsError, match=r"must start with postgresql://") as err:
        LocalPrefect(home=tmp_path / "b", db_url="mysql://u:s3cret@h/db")
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)
    assert server_db_url("postgres://u@h:5/p") == "postgresql+asyncpg://u@h:5/p"


def test_serve_with_a_wrong_password_exits_with_one_line(tmp_path, local_postgres, capsys):
    wrong = _with_password(local_postgres.url, "hunter2-wrong")
    code = prefect_local.main(["serve", "--home", str(tmp_path / "home"), "--port", str(free_port()),
                               "--no-deploy", "--db-url", wrong])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot connect to the Prefect database")
    assert "hunter2-wrong" not in err and local_postgres.password not in err
