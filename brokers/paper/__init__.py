"""The paper venue: the project's own simulated broker (``shared/spec/paper-venue.md``).

Run it with ``python manage.py runvenue`` or, without Django,
``python -m brokers.paper`` (same options). ``engine`` holds the state and the
trading rules (pure, no sockets), ``server`` the aiohttp REST and WebSocket face,
``testing`` a launcher (``running_venue``), a small REST client (``VenueClient``)
and a stream recorder (``StreamRecorder``) for other suites.

Decisions where the spec is silent
==================================

Wire format
-----------
- Volumes, money and prices are answered as JSON numbers, always. Their text is
  the exact decimal (money has at most 2 decimals, volumes are multiples of the
  step, prices have the symbol's digits): parse with ``parse_float=Decimal`` to
  keep them exact. Inside, volumes, money and prices are ``Decimal``.
- Requests may give volumes and money amounts as JSON numbers or decimal strings
  (``"0.50"``, no exponent); prices, SL and TP must be JSON numbers. Prices with
  more digits than the symbol are rounded half up to its digits.
- Fields the spec does not list are ignored in order and account bodies; in the
  faults body an unknown field is a ``VALIDATION_ERROR`` (a typo there would
  silently disable a test).
- ``ts`` is the venue clock in milliseconds since the epoch, rounded to 0.1 ms,
  never going backwards.
- An error about a field has a message that starts with that field
  (``"volume: ..."``, ``"body: ..."``, ``"accounts: ..."``).
- Unknown routes answer 404 ``NOT_FOUND``, a wrong method 405
  ``METHOD_NOT_ALLOWED`` (the spec names no code for these). The API key is checked
  first, so without it every route, known or not, answers 401.
- A path id that is not a positive integer (``/v1/accounts/abc``) is a
  ``VALIDATION_ERROR`` naming it.

Numbering
---------
- Logins start at 100001 and count up, skipping logins chosen by the caller.
- Order ids start at 1000001; every order takes one, including the closing orders
  behind client closes, SL, TP and stop-outs. A position's id is the id of the
  order that opened it (as on MT5), so ``position_id == order_id`` of its opening.
- Deal ids start at 50000001, one counter for fills and balance operations.
- ``POST /v1/admin/reset`` restarts every counter, ``seq`` included, and closes every
  open stream (close code 1012): its events describe state that no longer exists.
  A client coming back with an old ``from_seq`` gets ``reset``.

Accounts
--------
- ``POST /v1/accounts`` needs ``balance``, ``currency`` (USD, EUR, GBP or JPY),
  ``leverage`` (1..10000) and ``mode``. Posting an existing ``login`` again with the
  same fields answers 200 with the account; with other fields, 409
  ``IDEMPOTENCY_CONFLICT``. Opening an account records no deposit deal.
- Account answers add ``name``, ``platform`` and ``margin_level`` (percent, null
  without margin) to the spec's fields; ``free_margin`` is exactly ``equity - margin``
  as shown.
- Equity is the balance plus the floating profit of all positions, computed from
  per-symbol sums and rounded once to cents; each position's ``profit`` is rounded on
  its own, so summing shown profits may differ from ``equity - balance`` by a cent.
- Margin follows prices: ``volume x contract_size x price / leverage`` at the
  current ask (buys) or bid (sells), converted to the account currency at mid
  prices (via USD). Hedged positions each carry full margin.
- The margin check counts the spread the new position loses at once: an order is
  refused when free margin *after* it would be below zero. Pending orders reserve
  nothing; their margin is checked when they trigger, and one that does not fit is
  cancelled (``order_cancelled`` with ``reason: "insufficient_margin"``).
- Stop-out (equity below 50% of margin) closes the most losing position first, then
  the next, until the level is met again.
- A balance debit is refused when it would take free margin below zero; a zero
  amount or more than 2 decimals is a ``VALIDATION_ERROR``. Balance operations work
  on disabled accounts (they are the broker's, not the trader's).
- A disabled account gets ``ACCOUNT_DISABLED`` on every trading call: orders,
  closes, SL/TP changes and cancels. SL, TP and stop-out still act on it.

Orders and positions
--------------------
- ``client_order_id`` is required (at most 128 characters). One namespace per
  account holds the ids of orders *and* closes; reusing an order's id for a close is
  a conflict. "Same body" means the same values after parsing (``0.5`` and ``"0.50"``
  are the same volume).
- A market buy fills at the ask, a sell at the bid; ``price`` is ignored on market
  orders (but must be a number when given).
- Pending orders: a buy limit triggers when ask <= price, a sell limit when
  bid >= price, a buy stop when ask >= price, a sell stop when bid <= price. A resting
  limit fills at its own price (it was in the book when the market reached it); a
  stop fills at the market price when triggered (slippage included). A limit that
  is already marketable, or a stop already passed, when it arrives fills at once at
  the market price (answer ``status: "filled"``). There is no expiry.
- SL and TP must be on the far side of the price the position will be valued at
  (bid for buys, ask for sells) and, for pending orders, of the order price. They
  close at the market price when hit (a gap gives slippage), with the reason.
- A partial close must be on the step and leave either nothing or at least the
  minimum volume.
- ``GET /v1/accounts/{login}/orders`` lists working pending orders only: ``order_id,
  account, client_order_id, symbol, side, type, volume, price, sl, tp, comment,
  status ("placed"), ts``.
- Order and close answers add ``account, symbol, side, type, deal_id`` (orders) and
  ``order_id, deal_id, client_order_id`` (closes) to the spec's fields. Deals add
  ``comment``; a balance deal has null order, position, symbol, side, volume, price.
- A closed market (``trading: false``) refuses orders, closes and SL/TP changes with
  ``MARKET_CLOSED``, and nothing triggers on it until it reopens; reopening applies
  the current price at once.

Stream
------
- Market orders emit ``position_opened`` only; pending orders emit ``order_placed``,
  then either ``position_opened`` followed by ``order_filled`` (with ``position_id``,
  ``deal_id``, ``fill_price``), or ``order_cancelled`` (with ``reason``).
- ``position_closed`` data is the position after the close (``volume`` = what is
  left), with ``profit`` = the realised profit of this close.
- ``account_updated`` data is the full account answer. It is sent at once when the
  account was quiet for a second, otherwise the latest state goes out when the
  second is over; an update equal to the last one sent is skipped. Price moves send
  it too (equity follows prices).
- Heartbeats go to every stream every 5 s; their ``seq`` is the cursor of the
  connection: everything for its accounts up to that seq has been sent (it is the
  last event sent, or the venue seq when the stream started if nothing was sent
  since). Heartbeat and reset messages carry ``"account": null, "data": {}``.
- ``from_seq`` greater than the venue's seq (a client of an earlier run) also gets
  ``reset``. ``accounts=`` naming an account that does not exist is refused before the
  upgrade with 404 ``ACCOUNT_NOT_FOUND``; ``all=`` takes ``1``/``true`` (``0``/``false``
  mean not given).
- A client more than 50,000 events behind is dropped with close code 1013 and can
  come back with ``from_seq``. ``drop_streams`` closes with 1001, shutdown with 1001,
  admin reset with 1012.

Faults
------
- ``POST /v1/admin/faults`` changes only the fields it is given; ``seed`` restarts the
  fault generator. Extra field: ``rate_limit_per_s`` (0 = off) makes order calls past
  that many in one second answer 429 ``RATE_LIMITED``; it is the only way the venue
  produces that code.
- ``error_rate``, ``rate_limit_per_s`` apply to each order call: ``POST /v1/orders``,
  each item of a batch (whose result is then the error object), position closes and
  balance operations (idempotent by ``client_op_id`` like orders).
  ``reject_rate`` applies to new orders only, never to a repeated id (an idempotent
  answer stays the same).
- ``latency_ms`` delays every REST answer, errors and admin calls included (not
  stream messages).
- Stats: ``orders`` counts accepted orders (filled or placed), ``fills`` the in/out
  deals, ``duplicates_absorbed`` the repeated ids answered with their first answer,
  ``conflicts`` the 409s, ``events`` the venue seq, ``streams`` the open streams.

Process
-------
- Extra options: ``--retain-events`` (events kept for replay, default 100000: lower
  it only in tests) and ``--log-level``. ``--port 0`` picks a free port (logged).
- One log line per client connection (at its first request; a stream's line also
  says what it follows) and per refused call (batch items are summed in one line per
  batch); no access log, to keep the hot path lean.
- ``GET /v1/info`` (extra) reports the platform, suffix, volume rules and current seq;
  launchers poll it to know the venue is up.
"""
