"""The example agents' SQLite tables. Methods are blocking: call them from a worker thread
(tools run sync functions in one; setup goes through asyncio.to_thread). A connection per call
keeps them safe from any thread."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any


class _Table:
    SCHEMA = ""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(self.SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5)
        db.row_factory = sqlite3.Row
        return db

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with closing(self._db()) as db:
            return [dict(r) for r in db.execute(sql, args)]


class BookingStore(_Table):
    """Table bookings: one row per booking reference (the session that made it)."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS bookings (
        id INTEGER PRIMARY KEY, reference TEXT UNIQUE NOT NULL, cuisine TEXT NOT NULL,
        party_size INTEGER NOT NULL, time TEXT NOT NULL, created_at REAL NOT NULL)"""

    def book(self, reference: str, cuisine: str, party_size: int, time_hhmm: str) -> dict[str, Any]:
        """Create or update the booking `reference`: a retried or modified booking never doubles."""
        with closing(self._db()) as db, db:
            db.execute("""INSERT INTO bookings (reference, cuisine, party_size, time, created_at)
                          VALUES (?, ?, ?, ?, ?) ON CONFLICT(reference) DO UPDATE SET
                          cuisine=excluded.cuisine, party_size=excluded.party_size, time=excluded.time""",
                       (reference, cuisine, party_size, time_hhmm, time.time()))
        return self._rows("SELECT * FROM bookings WHERE reference = ?", reference)[0]

    def all(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM bookings ORDER BY id")


class ReminderStore(_Table):
    """Table reminders; `day` ("YYYY-MM-DD", or NULL: the next time it is `time`) was added later,
    so an older file gets the column on open."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS reminders (
        id INTEGER PRIMARY KEY, user TEXT NOT NULL, text TEXT NOT NULL, time TEXT NOT NULL,
        created_at REAL NOT NULL, day TEXT)"""

    def __init__(self, path: Path):
        super().__init__(path)
        with closing(self._db()) as db, db:
            if "day" not in {row["name"] for row in db.execute("PRAGMA table_info(reminders)")}:
                db.execute("ALTER TABLE reminders ADD COLUMN day TEXT")

    def add(self, user: str, text: str, time_hhmm: str, day: str | None = None) -> dict[str, Any]:
        with closing(self._db()) as db, db:
            cur = db.execute("INSERT INTO reminders (user, text, time, created_at, day) VALUES (?, ?, ?, ?, ?)",
                             (user, text, time_hhmm, time.time(), day))
        return {"id": cur.lastrowid, "text": text, "time": time_hhmm, "day": day}

    def of(self, user: str) -> list[dict[str, Any]]:
        return self._rows("SELECT id, text, time, day FROM reminders WHERE user = ? ORDER BY day, time", user)
