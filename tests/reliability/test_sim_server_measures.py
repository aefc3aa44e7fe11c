"""The campaign's sim-server figure: a 300 MB body is cut off at the limit, so the server never holds it."""

from __future__ import annotations

from cases_sim_server import oversized_body


def test_oversized_body_is_refused_without_buffering_it(tmp_path):
    figure = oversized_body(tmp_path)
    # the client may see the 413, or the connection closed under its still-running upload
    assert figure["answer"] in (413, "WriteError", "RemoteProtocolError", "ReadError"), figure
    assert figure["server_peak_rss_mb"] < 200, figure  # was 1.6 GB: the whole body, buffered twice over
