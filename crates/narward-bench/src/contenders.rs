//! What each contender runs. The SQL here is the SQL documented in `bench/README.md`.

/// DuckDB: closure of the roots by a recursive CTE over the references table, then one
/// decision per path written as Parquet (the data engineer's "plan"), then the summary.
/// Arguments: data dir, threads, memory limit, temp dir, output dir.
pub const DUCKDB_CLOSURE_PY: &str = r#"
import duckdb, json, sys, time
data, threads, mem, tmp, out = sys.argv[1:6]
t0 = time.time()
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"SET memory_limit = '{mem}'")
con.execute(f"SET temp_directory = '{tmp}'")
con.execute("SET enable_progress_bar = false")
phases = {}
def step(name, *sqls):
    t = time.time()
    r = None
    for s in sqls:
        r = con.execute(s).fetchall()
    phases[name] = round(time.time() - t, 3)
    return r
step("load",
  f"CREATE TABLE paths AS SELECT * FROM read_parquet('{data}/parquet/paths.parquet')",
  f"CREATE TABLE refs AS SELECT * FROM read_parquet('{data}/parquet/references.parquet')",
  f"""CREATE TABLE roots AS SELECT DISTINCT substr(line, 12, 32) AS hash
      FROM read_csv('{data}/roots/*.txt', header = false, columns = {{'line': 'VARCHAR'}})""")
step("closure", """
CREATE TABLE live AS
WITH RECURSIVE closure(id) AS (
    SELECT p.id FROM paths p JOIN roots r ON p.hash = r.hash
  UNION
    SELECT refs.reference FROM closure JOIN refs ON refs.referrer = closure.id
)
SELECT id FROM closure""")
step("plan", f"""
COPY (
  SELECT p.hash, p.name, p.file_size,
         CASE WHEN l.id IS NULL THEN 'archive' ELSE 'keep' END AS decision
  FROM paths p LEFT JOIN live l ON l.id = p.id
) TO '{out}/decisions.parquet' (FORMAT parquet)""")
rows = step("summary", f"""
SELECT decision, count(*) AS paths, sum(file_size) AS bytes
FROM read_parquet('{out}/decisions.parquet') GROUP BY ALL ORDER BY ALL""")
res = {d: {"paths": int(n), "bytes": int(b)} for d, n, b in rows}
print(json.dumps({"keep": res.get("keep", {}).get("paths", 0), "decisions": res,
                  "phases": phases, "total_s": round(time.time() - t0, 3),
                  "duckdb": duckdb.__version__}))
"#;

/// DuckDB: the growth report over an S3 Inventory (objects and bytes per month and
/// category). Arguments: inventory dir (`…/inventory/csv` or `…/parquet`), format, threads,
/// memory limit.
pub const DUCKDB_INVENTORY_PY: &str = r#"
import duckdb, json, sys, time
inv, fmt, threads, mem = sys.argv[1:5]
t0 = time.time()
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"SET memory_limit = '{mem}'")
con.execute("SET enable_progress_bar = false")
if fmt == "csv":
    src = f"""(SELECT url_decode(Key) AS key, Size AS size, LastModifiedDate AS last_modified
              FROM read_csv('{inv}/data/*.csv.gz', header = false, quote = '"',
                columns = {{'Bucket': 'VARCHAR', 'Key': 'VARCHAR', 'Size': 'BIGINT',
                            'LastModifiedDate': 'TIMESTAMP', 'ETag': 'VARCHAR',
                            'StorageClass': 'VARCHAR'}}))"""
else:
    src = f"""(SELECT key, size, last_modified_date AS last_modified
              FROM read_parquet('{inv}/data/*.parquet'))"""
rows = con.execute(f"""
SELECT strftime(last_modified, '%Y-%m') AS month,
       CASE WHEN key LIKE 'nar/%' THEN 'nar'
            WHEN key LIKE '%.narinfo' THEN 'narinfo'
            WHEN key LIKE '%.ls' THEN 'listing'
            WHEN key LIKE 'log/%' THEN 'log'
            WHEN key LIKE 'debuginfo/%' THEN 'debuginfo'
            WHEN key = 'nix-cache-info' THEN 'cache-info'
            ELSE 'other' END AS category,
       count(*) AS objects, sum(size) AS bytes
FROM {src} GROUP BY ALL ORDER BY ALL""").fetchall()
print(json.dumps({"groups": len(rows), "total_objects": sum(r[2] for r in rows),
                  "total_bytes": int(sum(r[3] for r in rows)),
                  "total_s": round(time.time() - t0, 3)}))
"#;
