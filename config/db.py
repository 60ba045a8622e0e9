"""Database helpers shared by the hot paths."""


def relax_commit() -> None:
    """Inside a transaction: commit without waiting for the WAL flush (a few ms per commit).

    Only for transactions whose loss in a database crash is repaired by replay: the copy
    pipeline's, where every step is keyed by ids derived from the master event (venue
    sequence, client order id), so a lost commit is redone and the venue answers the
    repeated order with the first one instead of opening a second position.
    """
    from .bulk import cursor

    # A plain psycopg cursor: Django's wrapper costs more than the round trip itself.
    with cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
