"""Tools, not the line: the Twilio simulator (`caller`), the server process helper
(`server_process`) and the drill engines (`slow_stt`).

Tests, benchmarks and the gonogo and simulate_call commands use them. The call path imports
none of them; the STT registry names `slow_stt` and loads it only when STT_ENGINE=slow.
"""
