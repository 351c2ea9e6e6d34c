"""History providers: where books a coin's storage lacks come from (an archive, a peer
obd, the exchange plugin's own history), each book labelled with its provenance.
The seam is `obd.history.provider` (public); `obd.history.registry` finds providers."""
