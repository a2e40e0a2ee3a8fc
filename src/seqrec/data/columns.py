"""Canonical column names of an interaction log. Readers map a file's own columns onto these."""

USER = "user"
ITEM = "item"
TIME = "time"
RATING = "rating"
SESSION = "session"

REQUIRED = (USER, ITEM)
OPTIONAL = (TIME, RATING, SESSION)
ALL = REQUIRED + OPTIONAL
