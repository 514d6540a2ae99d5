//! Item 8 of the benchmark, **postgres** (issue 13, only with `BENCH_ONLY=postgres`: it needs
//! Debian's `postgresql`): the ingest load of item 2 on the sled default, then on a throwaway
//! PostgreSQL cluster with one host, then with two hosts on the same database (the load split
//! between them), beside the durable limit; CPU per webhook on the hosts and on the database
//! (the postmaster and its backends).

use super::*;

#[path = "../../../tests/support/postgres.rs"]
mod cluster;

/// The CPU time of the cluster's processes: the postmaster and every child of it.
fn database_cpu(postmaster: u32) -> Duration {
    let mut total = cpu_time(postmaster);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        // Field 4 (the parent's pid) is the second after the command name.
        let parent = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(postmaster) {
            total += cpu_time(pid);
        }
    }
    total
}

/// A host on the PostgreSQL database `url`, its data (plugin cache) in `dir/data`.
fn start_on_postgres(dir: &Path, data: &str, provider: SocketAddr, url: &str) -> Server {
    let port = free_port();
    let data = dir.join(data);
    let setup = Setup {
        port,
        data_dir: &data,
        plugins_dir: None,
        channels: vec!["sms".into()],
        provider,
    };
    let config = write_config(dir, &setup);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 16\n"
    ));
    std::fs::write(&config, text).unwrap();
    Server::start_config(&config, port, &[], Stdio::inherit())
}

/// A row for several servers loaded at once: their summed rate, CPU over all of them (and the
/// database's, in the note).
fn combined_row(
    item: &'static str,
    what: &str,
    cpu: Duration,
    results: &[LoadResult],
    note: String,
) -> (f64, Row) {
    let requests: u64 = results.iter().map(|r| r.requests).sum();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let rate: f64 = results.iter().map(LoadResult::rate).sum();
    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.latencies.clone()).collect();
    latencies.sort();
    let per = cpu / requests.max(1) as u32;
    println!(
        "{what:<44} {rate:>9.0} /s  p50 {:>10}  p99 {:>10}  CPU/req {:>10}  ({requests} requests, {errors} errors)",
        fmt_dur(Some(percentile(&latencies, 0.5))),
        fmt_dur(Some(percentile(&latencies, 0.99))),
        fmt_dur(Some(per)),
    );
    let row = Row {
        item,
        what: what.to_owned(),
        rate: Some(rate),
        p50: Some(percentile(&latencies, 0.5)),
        p99: Some(percentile(&latencies, 0.99)),
        cpu: Some(per),
        rss_kib: None,
        note: if errors > 0 {
            format!("{note}; {errors} errors")
        } else {
            note
        },
    };
    (rate, row)
}

/// The 15 statements with the most total execution time in the database at `url`.
async fn print_statements(url: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the bench database");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect("pg_stat_statements");
    let rows = client
        .query(
            "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
             FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15",
            &[],
        )
        .await
        .expect("reading pg_stat_statements");
    println!("database time by statement (one host):");
    for r in rows {
        let (calls, total, n, q): (i64, f64, i64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!("{total:>10.1} ms {calls:>8} calls {n:>8} rows  {q}");
    }
}

pub(super) fn postgres_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let connections = env_num("CONNECTIONS", 32);
    let seconds = env_num("SECONDS", 5);
    let window = Until::Elapsed(Duration::from_secs(seconds));
    println!("== 8. postgres: {connections} connections, {seconds} s each ==");
    let make: MakeRequest = Arc::new(|n| webhook("sms", n));
    let dir = tempfile::tempdir().unwrap();
    let (durable, durable_row) = measure_limit(
        rt,
        &["--serve-durable".as_ref(), dir.path().as_os_str()],
        ("8", "durable limit (append + group fdatasync, 200)"),
        (connections, window, &make),
        |_| String::new(),
    );
    let provider = rt.block_on(fake_provider());

    let server = Server::start_sms(dir.path(), "sled", provider.addr);
    let (sled, before) = warm_then_measure(rt, &server, connections, window, make.clone());
    let sled_row = server_row(
        "8",
        "ingest on sled (one host)",
        server.pid(),
        before,
        &sled,
        format!(
            "{:.1}% of the durable limit",
            100.0 * sled.rate() / durable.rate().max(1.0)
        ),
    );
    drop(server);

    // BENCH_PG_STATEMENTS=1: the statements the one-host run spent the database's time in.
    let statements = std::env::var("BENCH_PG_STATEMENTS").is_ok_and(|v| v == "1");
    // BENCH_PG_OPTIONS: more server options, e.g. auto_explain's.
    let mut options = std::env::var("BENCH_PG_OPTIONS").unwrap_or_default();
    if statements {
        options.push_str(" -c shared_preload_libraries=pg_stat_statements");
    }
    let pg = if options.trim().is_empty() {
        cluster::PgCluster::start()
    } else {
        cluster::PgCluster::start_with(&options)
    };
    let postmaster = pg.postmaster_pid().expect("the postmaster's pid");
    let url = rt.block_on(pg.create_database("bench_one"));
    let server = start_on_postgres(dir.path(), "pg-one", provider.addr, &url);
    let warm: MakeRequest = Arc::new(|n| webhook("sms", 5_000_000 + n));
    let half = Until::Elapsed(Duration::from_millis(500));
    rt.block_on(load(server.addr, connections, half, warm.clone()));
    let (before, db_before) = (cpu_time(server.pid()), database_cpu(postmaster));
    let one = rt.block_on(load(server.addr, connections, window, make.clone()));
    let db_cpu = database_cpu(postmaster).saturating_sub(db_before);
    let host_cpu = cpu_time(server.pid()).saturating_sub(before);
    let (one_rate, one_row) = combined_row(
        "8",
        "ingest on postgres (one host)",
        host_cpu,
        std::slice::from_ref(&one),
        format!(
            "{:.1}% of sled (target ≥ 50%); database CPU/req {}",
            100.0 * one.rate() / sled.rate().max(1.0),
            fmt_dur(Some(db_cpu / one.requests.max(1) as u32))
        ),
    );
    drop(server);
    if statements {
        rt.block_on(print_statements(&url));
    }

    let url = rt.block_on(pg.create_database("bench_two"));
    let a = start_on_postgres(dir.path(), "pg-a", provider.addr, &url);
    let b = start_on_postgres(dir.path(), "pg-b", provider.addr, &url);
    rt.block_on(async {
        tokio::join!(
            load(a.addr, connections / 2, half, warm.clone()),
            load(b.addr, connections / 2, half, warm.clone()),
        )
    });
    let (cpu_a, cpu_b, db_before) = (
        cpu_time(a.pid()),
        cpu_time(b.pid()),
        database_cpu(postmaster),
    );
    let odd: MakeRequest = Arc::new(|n| webhook("sms", 2 * n + 1));
    let even: MakeRequest = Arc::new(|n| webhook("sms", 2 * n));
    let (ra, rb) = rt.block_on(async {
        tokio::join!(
            load(a.addr, connections / 2, window, even),
            load(b.addr, connections / 2, window, odd),
        )
    });
    let db_cpu = database_cpu(postmaster).saturating_sub(db_before);
    let hosts_cpu =
        cpu_time(a.pid()).saturating_sub(cpu_a) + cpu_time(b.pid()).saturating_sub(cpu_b);
    let requests = ra.requests + rb.requests;
    let two_rate = ra.rate() + rb.rate();
    let (_, two_row) = combined_row(
        "8",
        "ingest on postgres (two hosts, one database)",
        hosts_cpu,
        &[ra, rb],
        format!(
            "{:.2}x one host; database CPU/req {}",
            two_rate / one_rate.max(1.0),
            fmt_dur(Some(db_cpu / requests.max(1) as u32))
        ),
    );
    drop((a, b, pg));
    rows.push(durable_row);
    rows.push(sled_row);
    rows.push(one_row);
    rows.push(two_row);
}
