import multiprocessing as mp

from explorer.measure.store import MeasureRecord, Store


def test_round_trip_and_query(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.add(MeasureRecord("abc", "measure", "cpu", {"threads": 2}, {"tvm": "0.27"}, latency_ms=1.5, payload={"n": 3}))
        st.add(MeasureRecord("abc", "build", "cpu", {"threads": 2}, {"tvm": "0.27"}, ok=False, error="boom"))
        st.add(MeasureRecord("def", "measure", "cpu", {"threads": 1}, {"tvm": "0.27"}, latency_ms=2.0))
        assert st.count() == 3
        got = st.query(key="abc", kind="measure", knobs={"threads": 2}, toolchain={"tvm": "0.27"})
        assert len(got) == 1 and got[0].latency_ms == 1.5 and got[0].payload == {"n": 3}
        assert st.query(ok=False)[0].error == "boom"
        r = got[0]
        assert MeasureRecord.from_json(r.as_json()) == r


def _writer(path, who, n):
    with Store(path) as st:
        for i in range(n):
            st.add(MeasureRecord(f"{who}-{i}", "measure", "cpu", {"i": i}, {}, latency_ms=float(i)))


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path) as st:
        assert st.count() == 400
        assert {r.key for r in st.query()} == {f"{w}-{i}" for w in "ab" for i in range(200)}
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
