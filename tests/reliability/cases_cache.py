"""Campaign cases of the call cache (H01..): a damaged or hostile cache directory, and a full disk.

A damaged cache (a file where its directory should be, a truncated or random cache.db, a disk that fills
up while it writes) is one line naming the path. A planted pickle, in a response row or a counter row, is
never unpickled: the row is ignored with a warning (a miss) and the run goes on. Measure:
`pickle_executed`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from unittest import mock

from reliability_campaign import Case, Seen, nothing_half_written, picaco, small_run_config, write_yaml

MARKER = "pickle-ran"


class Payload:
    """Unpickling this creates the file `marker`: proof that code from the cache ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def run(root: Path, *args: str) -> Seen:
    config = write_yaml(root / "run.yaml", small_run_config(root))
    return picaco("optimize", "--config", str(config), *args)


def warmed(root: Path) -> Path:
    """A cache filled by a finished run (run 'warm'), as a user's cache is."""
    seen = run(root, "--run-name", "warm")
    if seen.exit_code != 0:
        raise AssertionError(f"the warm-up run failed: {seen.error_lines}")
    return root / "cache"


def plant_pickles(cache: Path, marker: Path, responses: bool = True, counters: bool = True) -> None:
    """Pickled rows where the run will read: every response row of the cache, and every counter."""
    import diskcache

    if responses:
        with sqlite3.connect(cache / "cache.db") as con:
            keys = [k for (k,) in con.execute("SELECT key FROM Cache WHERE raw = 1")]
        attacker = diskcache.Cache(str(cache))  # the default Disk pickles
        for key in keys:
            attacker.set(key, [Payload(marker)])
        attacker.close()
    if counters:
        with sqlite3.connect(cache / "counters" / "cache.db") as con:
            keys = [k for (k,) in con.execute("SELECT key FROM Cache WHERE raw = 1")]
        attacker = diskcache.Cache(str(cache / "counters"))
        for key in keys:
            attacker.set(key, Payload(marker))
        attacker.close()


def no_marker(root: Path) -> str | None:
    if (root / MARKER).exists():
        return "the planted pickle ran (its marker file exists)"
    return nothing_half_written(root)


def damage(cache: Path, how: str) -> None:
    db = cache / "cache.db"
    if how == "truncate":
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size // 2)
    else:
        db.write_bytes(os.urandom(64 * 1024))


# -- the cases -------------------------------------------------------------------------------------------------
def h01_cache_dir_is_a_file(root: Path) -> Seen:
    (root / "cache").write_text("not a directory\n")
    return run(root)


def h02_truncated_db(root: Path) -> Seen:
    damage(warmed(root), "truncate")
    return run(root)


def h03_random_db(root: Path) -> Seen:
    damage(warmed(root), "random")
    return run(root)


def h04_pickled_response_rows(root: Path) -> Seen:
    plant_pickles(warmed(root), root / MARKER, counters=False)
    return run(root)


def h05_pickled_counter_rows_stats(root: Path) -> Seen:
    plant_pickles(warmed(root), root / MARKER, responses=False)
    return picaco("cache", "stats", "--cache-dir", str(root / "cache"))


def h06_pickled_counter_rows_run(root: Path) -> Seen:
    plant_pickles(warmed(root), root / MARKER, responses=False)
    return run(root)


def h07_disk_full(root: Path) -> Seen:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with mock.patch("picaco.llm.cache._insert_row", side_effect=full):
        return run(root)


def h08_sqlite_disk_full(root: Path) -> Seen:
    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    with mock.patch("picaco.llm.cache._insert_row", side_effect=full):
        return run(root)


def h09_stats_missing_dir(root: Path) -> Seen:
    return picaco("cache", "stats", "--cache-dir", str(root / "no-cache-here"))


def h10_stats_damaged_db(root: Path) -> Seen:
    damage(warmed(root), "random")
    return picaco("cache", "stats", "--cache-dir", str(root / "cache"))


def h11_stats_on_a_file(root: Path) -> Seen:
    (root / "cache").write_text("not a directory\n")
    return picaco("cache", "stats", "--cache-dir", str(root / "cache"))


CASES = [
    Case("H01", "cache", "client.cache_dir names a file", r"cache(_dir| directory) .*cache.* is a file",
         "nothing half-written", h01_cache_dir_is_a_file, nothing_half_written),
    Case("H02", "cache", "cache.db cut to half its size", r"cache database .*cache\.db is damaged",
         "the damaged file left as it was; nothing half-written", h02_truncated_db, nothing_half_written),
    Case("H03", "cache", "cache.db replaced by random bytes", r"cache database .*cache\.db is damaged.*not a database",
         "nothing half-written", h03_random_db, nothing_half_written),
    Case("H04", "cache", "every response row of the cache is a planted pickle", r"Optimized meta-instruction",
         "the pickles never ran; the run paid for its answers again", h04_pickled_response_rows, no_marker,
         expect_exit=0),
    Case("H05", "cache", "`picaco cache stats` over counter rows that are planted pickles", r"entries",
         "the pickles never ran", h05_pickled_counter_rows_stats, no_marker, expect_exit=0),
    Case("H06", "cache", "a run over counter rows that are planted pickles", r"Optimized meta-instruction",
         "the pickles never ran; the counters started again", h06_pickled_counter_rows_run, no_marker, expect_exit=0),
    Case("H07", "cache", "the disk fills up while the cache writes (ENOSPC)",
         r"cannot write to the cache at .*cache: the disk is full", "nothing half-written", h07_disk_full,
         nothing_half_written),
    Case("H08", "cache", "SQLite finds the disk full while the cache writes",
         r"cannot write to the cache at .*cache: the disk is full", "nothing half-written", h08_sqlite_disk_full,
         nothing_half_written),
    Case("H09", "cache", "`picaco cache stats` on a directory that does not exist", r"no cache at .*no-cache-here",
         "nothing created", h09_stats_missing_dir, lambda root: "created" if (root / "no-cache-here").exists() else None,
         expect_exit=2),
    Case("H10", "cache", "`picaco cache stats` on a cache.db of random bytes", r"cache database .*cache\.db is damaged",
         "nothing half-written", h10_stats_damaged_db, nothing_half_written, expect_exit=2),
    Case("H11", "cache", "`picaco cache stats` where a file stands for the cache directory", r"cache directory .* is a file",
         "nothing half-written", h11_stats_on_a_file, nothing_half_written, expect_exit=2),
]


# -- measures --------------------------------------------------------------------------------------------------
def pickle_executed(work: Path) -> bool:
    """Did a planted pickle run? Response rows and counter rows of a warm cache are replaced by pickles
    whose unpickling creates a marker file; then a run and `picaco cache stats` read that cache."""
    marker = work / MARKER
    plant_pickles(warmed(work), marker)
    seen_run = run(work, "--run-name", "after-planting")
    seen_stats = picaco("cache", "stats", "--cache-dir", str(work / "cache"))
    if seen_run.exit_code != 0 or seen_stats.exit_code != 0:
        raise AssertionError(f"a read of the planted cache failed: run {seen_run.error_lines}, "
                             f"stats {seen_stats.error_lines}")
    return marker.exists()


MEASURES = {"pickle_executed": pickle_executed}
