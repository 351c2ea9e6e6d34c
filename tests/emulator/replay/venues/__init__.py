"""One module a ccxt exchange id, each with `create(recording, exchange_id) -> Venue`."""
