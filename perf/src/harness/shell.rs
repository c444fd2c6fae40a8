//! Running the commands that set systems up, with a record of each for the report.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// Runs commands and keeps their command lines, so the report can show exactly what set
/// each system up.
#[derive(Debug, Default)]
pub struct Shell {
    log: Vec<String>,
    aliases: Vec<(String, String)>,
}

impl Shell {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `cmd` to completion; fails with its stderr if it exits non-zero. Returns stdout.
    pub fn run(&mut self, cmd: &mut Command) -> anyhow::Result<String> {
        let line = describe(cmd);
        self.log.push(line.clone());
        quiet(cmd).with_context(|| format!("`{line}`"))
    }

    /// Starts `cmd` in the background with stdout and stderr appended to `log`.
    pub fn spawn(&mut self, cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
        let line = describe(cmd);
        self.log.push(format!("{line} &"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting `{line}`"))
    }

    /// Records a step that is not a command (a file written, a key generated).
    pub fn note(&mut self, what: impl Into<String>) {
        self.log.push(what.into());
    }

    /// Shows `value` (a generated key, a scratch path) as `name` in the record.
    pub fn alias(&mut self, value: impl Into<String>, name: impl Into<String>) {
        self.aliases.push((value.into(), name.into()));
    }

    /// The commands run so far, in order, with aliases applied.
    pub fn into_log(self) -> Vec<String> {
        let aliases = self.aliases;
        self.log
            .into_iter()
            .map(|l| aliases.iter().fold(l, |l, (v, n)| l.replace(v.as_str(), n)))
            .collect()
    }
}

/// Runs `cmd` without recording it; fails with its stderr if it exits non-zero.
pub fn quiet(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{}`", describe(cmd)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}: {}", out.status, err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command line as a person would type it.
pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    line
}
