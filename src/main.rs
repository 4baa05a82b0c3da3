//! Entry point: parse arguments, set up logging, run the command, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use seatable_backup::backup;
use seatable_backup::catalog::{parse_before, Selection};
use seatable_backup::cli::{Cli, Command, DbModeArg, LogFormat, RestorePart, RetentionAction, SetArgs};
use seatable_backup::config::Config;
use seatable_backup::error::{hint_of, one_line, Class};
use seatable_backup::exit::class_of;
use seatable_backup::monitor::{Monitor, RunReport};
use seatable_backup::restore::untar::UntarOptions;
use seatable_backup::restore::{self, Part, RestoreOptions};
use seatable_backup::run::RunContext;
use seatable_backup::verify::{self, VerifyOptions};
use seatable_backup::{clock, list, lock, output, plan, prune, retention, store};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    limit_allocator_growth();
    let cli = Cli::parse();
    let format = cli.global.log_format;
    init_logging(format, &cli.global.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Class::Internal.exit_code());
        }
    };
    let result = runtime.block_on(run(cli));
    // Don't wait forever for a blocking task (a tar thread) of an aborted run.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let class = class_of(&err);
            if format == LogFormat::Json {
                tracing::error!(class = %class, exit_code = class.exit_code(), "{}", one_line(&err));
            }
            eprintln!("error: {}", one_line(&err));
            if let Some(hint) = hint_of(&err) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(class.exit_code())
        }
    }
}

/// Part buffers (5 MiB and more) are large and short-lived. glibc's malloc would raise its mmap
/// threshold after the first one is freed and from then on carve them out of per-thread arenas,
/// whose memory is rarely returned: RSS would creep up with the number of parts. A fixed 4 MiB
/// threshold keeps every part buffer in its own mapping, handed back when freed, while the
/// 1 MiB chunks between producer and compressor are recycled from the heap (a fresh mapping for
/// each would cost a page fault per 4 KiB).
fn limit_allocator_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(output::LogWriter);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    clock::init_from_env().map_err(seatable_backup::error::usage)?;
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "seatable-backup", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let config = Config::load(cli.global.config.as_deref(), cli.settings.layer())?;
    // A progress line only for a human watching: a terminal on stderr, text logs.
    let watched = cli.global.log_format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let store = store::open(&config).await?;
    match cli.command {
        Command::Backup(args) => {
            let _lock = lock::acquire(&config.lock_file, "backup")?;
            let monitor = Monitor::new(&config.monitoring);
            let started = clock::now();
            monitor.start().await;
            let ctx = RunContext::new().with_progress(watched.then(output::Progress::start));
            let _watch = ctx.cancel_on_signal("aborting the backup");
            let result = backup::run(&config, store.clone(), args.only, &ctx).await;
            let report = match &result {
                Ok(m) => RunReport::new(&config, store.describe(), started, Ok(m)),
                Err(e) => {
                    RunReport::new(&config, store.describe(), started, Err((&one_line(e), class_of(e).exit_code())))
                }
            };
            summarize(cli.global.log_format, &report);
            monitor.finish(&report).await;
            result.map(|_| ())
        }
        Command::List(args) => list::run(&config, store.as_ref(), args.of_host.as_deref(), args.json).await,
        Command::Plan(args) => plan::run(&config, store.as_ref(), args.json).await,
        Command::Restore(args) => {
            if args.allow_external_symlinks {
                tracing::warn!(
                    "`--allow-external-symlinks` is no longer needed: every symlink is restored as it was archived; \
                     the flag is ignored"
                );
            }
            let _lock = if args.dry_run { None } else { Some(lock::acquire(&config.lock_file, "restore")?) };
            if args.db_restore == DbModeArg::Recreate {
                tracing::warn!("--db-restore recreate is no longer needed: views, triggers, routines and events are restored with the atomic swap");
            }
            let opts = RestoreOptions {
                selection: selection(&args.set, &config, args.allow_incomplete)?,
                only: args.only.map(|p| match p {
                    RestorePart::Db => Part::Db,
                    RestorePart::Data => Part::Data,
                    RestorePart::Config => Part::Config,
                    RestorePart::Objects => Part::Objects,
                }),
                databases: args.only_databases,
                replace: args.replace,
                force: args.force,
                untar: UntarOptions {
                    allow_devices: args.allow_devices,
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    restore_owner: unsafe { libc::geteuid() } == 0,
                },
                seatable_restore_all: args.seatable_restore_all,
                dry_run: args.dry_run,
            };
            // A signal does not drop the restore half-way: it asks it to stop, and the restore
            // removes what it staged or undoes the swap under way before it returns.
            let ctx = RunContext::new();
            let _watch =
                ctx.cancel_on_signal("stopping the restore (what was staged is removed, a swap under way is undone)");
            restore::run(&config, store.clone(), &opts, &ctx).await
        }
        Command::Retention(args) => match args.action {
            RetentionAction::Show { json } => retention::show(&config, store.as_ref(), json).await,
            RetentionAction::Apply { dry_run } => {
                let _lock = if dry_run { None } else { Some(lock::acquire(&config.lock_file, "retention apply")?) };
                retention::apply(&config, store.as_ref(), dry_run).await
            }
        },
        Command::Prune(args) => {
            let _lock = if args.dry_run { None } else { Some(lock::acquire(&config.lock_file, "prune")?) };
            prune::run(&config, store.clone(), args.dry_run, args.json).await
        }
        Command::Completions { .. } | Command::Man => Ok(()),
        Command::Verify(args) => {
            let opts = VerifyOptions { selection: selection(&args.set, &config, false)?, deep: args.deep };
            verify::run(&config, store.clone(), &opts).await
        }
    }
}

/// The run's one-paragraph summary: plain on stderr for a human (and the journal), or a JSON
/// log event with the figures as fields.
fn summarize(format: LogFormat, r: &RunReport) {
    match format {
        LogFormat::Text => eprintln!("{}", r.summary),
        LogFormat::Json => tracing::info!(
            event = "summary",
            status = r.status,
            set = r.set.as_deref().unwrap_or(""),
            class = r.class.as_deref().unwrap_or(""),
            destination = %r.destination,
            raw_bytes = r.raw_bytes,
            stored_bytes = r.stored_bytes,
            duration_seconds = r.duration_seconds,
            exit_code = r.exit_code,
            "{}",
            r.summary
        ),
    }
}

fn selection(args: &SetArgs, config: &Config, allow_incomplete: bool) -> anyhow::Result<Selection> {
    let before = match &args.before {
        Some(b) => Some(parse_before(b).ok_or_else(|| {
            seatable_backup::error::usage(format!(
                "--before `{b}` is not a date (2026-11-29), an RFC 3339 time or a stamp"
            ))
        })?),
        None => None,
    };
    Ok(Selection {
        set: Some(args.set.clone()),
        host: args.from_host.clone().unwrap_or_else(|| config.host.clone()),
        before,
        allow_incomplete,
        strict: false,
    })
}
