//! The Engine API calls on one container: create it, hand it the job message and start it,
//! inspect, follow and read its log, lower its memory limit for the run step when the executor
//! asks, wait for it and remove it; and the probe that reads an image's toolchain version.

use std::collections::{BTreeMap, HashMap};

use bollard::{
    container::LogOutput,
    errors::Error as DockerError,
    models::{ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HostConfig},
    query_parameters::{
        AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
};
use cola_wire::{JobMessage, LanguageDef, frame};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{
    DockerBackend, LABEL_JOB_ID, LABEL_LANGUAGE, LABEL_USER, NAME, container_name, daemon,
    executor, status_of, uuid_suffix,
};
use crate::backend::BackendError;

impl DockerBackend {
    /// Creates the job's container, for a job message of `message_bytes`; `Ok(false)` if one of
    /// that name exists already.
    pub(super) async fn create(
        &self,
        job: &JobMessage,
        lang: &LanguageDef,
        message_bytes: usize,
    ) -> Result<bool, BackendError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&container_name(job))
            .build();
        let mut labels = self.labels()?;
        labels.extend([
            (LABEL_JOB_ID.to_owned(), job.id.to_string()),
            (LABEL_USER.to_owned(), job.user.as_str().to_owned()),
            (LABEL_LANGUAGE.to_owned(), lang.name.to_owned()),
        ]);
        match self
            .docker
            .create_container(
                Some(options),
                self.container_spec(job, lang, message_bytes, labels),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(409) => Ok(false),
            Err(e) => Err(daemon("create the container", e)),
        }
    }

    /// Attaches to the created container's stdin, starts it and hands it the job message `body`.
    pub(super) async fn start_with_input(
        &self,
        name: &str,
        body: &[u8],
    ) -> Result<(), BackendError> {
        let options = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stream(true)
            .build();
        let mut attached = self
            .docker
            .attach_container(name, Some(options))
            .await
            .map_err(|e| daemon("attach to the container", e))?;
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| daemon("start the container", e))?;
        let input = async {
            attached.input.write_all(body).await?;
            attached.input.flush().await?;
            // Closing our side closes the container's stdin (stdin_once): the executor reads EOF.
            attached.input.shutdown().await
        };
        input
            .await
            .map_err(|e| BackendError::io(NAME, "writing the job message to the container", e))
    }

    pub(super) async fn inspect(
        &self,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, BackendError> {
        match self.docker.inspect_container(name, None).await {
            Ok(inspected) => Ok(Some(inspected)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(daemon("inspect the container", e)),
        }
    }

    pub(super) async fn remove(&self, name: &str) -> Result<(), BackendError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            // 409: a removal is already in progress.
            Err(e) if !matches!(status_of(&e), Some(404 | 409)) => {
                Err(daemon("remove the container", e))
            }
            _ => Ok(()),
        }
    }

    /// The container's standard output (the result frame), at most `limit` bytes; `Err` says
    /// why it cannot be had (more than `limit` bytes, or the log not read), for the message of
    /// a job without a valid result.
    pub(super) async fn stdout(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(false)
            .follow(false)
            .build();
        let mut logs = self.waiter.logs(name, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(|e| format!("read the container's log: {e}"))? {
                LogOutput::StdOut { message } => {
                    if (out.len() + message.len()) as u64 > limit {
                        return Err(format!(
                            "the container wrote more than {limit} bytes of result frame"
                        ));
                    }
                    out.extend_from_slice(&message);
                }
                _ => continue,
            }
        }
        Ok(out)
    }

    /// The end of the container's standard error (the executor's log), for error messages.
    pub(super) async fn stderr_tail(&self, name: &str) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(false)
            .stderr(true)
            .tail("20")
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            if let LogOutput::StdErr { message } = chunk {
                text.extend_from_slice(&message);
            }
        }
        // The last 2 KiB (a character cut in two becomes U+FFFD).
        let start = text.len().saturating_sub(2048);
        String::from_utf8_lossy(&text[start..]).trim().to_owned()
    }

    /// The toolchain version of `lang`, from `cola executor --versions` in its image. The probe
    /// container removes itself when it exits (`auto_remove`), even if this middleware dies
    /// meanwhile; its output is read through an attachment made before it starts.
    pub(super) async fn image_version(
        &self,
        lang: &LanguageDef,
    ) -> Result<Option<String>, BackendError> {
        let name = format!("cola-versions-{}-{}", lang.name, uuid_suffix());
        let spec = ContainerCreateBody {
            image: Some(self.config.image(lang)),
            cmd: Some(vec!["--versions".into()]),
            user: Some(format!("{}:{}", self.config.user.0, self.config.user.1)),
            labels: Some(self.labels()?),
            attach_stdout: Some(true),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                auto_remove: Some(true),
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_owned(),
                    "rw,nosuid,nodev,size=64m".to_owned(),
                )])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker
            .create_container(Some(options), spec)
            .await
            .map_err(|e| daemon("create the container", e))?;
        let attach = AttachContainerOptionsBuilder::new()
            .stdout(true)
            .stream(true)
            .build();
        let started = async {
            let attached = self
                .waiter
                .attach_container(&name, Some(attach))
                .await
                .map_err(|e| daemon("attach to the container", e))?;
            self.docker
                .start_container(&name, None)
                .await
                .map_err(|e| daemon("start the container", e))?;
            Ok(attached)
        }
        .await;
        let mut attached = match started {
            Ok(attached) => attached,
            Err(e) => {
                // Never started, so never removed by the daemon.
                self.remove(&name).await?;
                return Err(e);
            }
        };
        let mut out = Vec::new();
        while let Some(chunk) = attached.output.next().await {
            if let LogOutput::StdOut { message } =
                chunk.map_err(|e| daemon("read the output", e))?
            {
                out.extend_from_slice(&message);
                if out.len() > 1 << 20 {
                    return Err(executor("--versions printed more than 1 MiB".into()));
                }
            }
        }
        let versions: BTreeMap<String, String> = serde_json::from_slice(&out)
            .map_err(|e| BackendError::json(NAME, "--versions printed no JSON", e))?;
        Ok(versions.get(lang.name).cloned())
    }

    /// Answers the executor's request for its run step's memory limit, if the first line of its
    /// standard output is one, by lowering the container's limit to it. Done once that line is
    /// read, or the container has ended without one. A failure is only logged: the executor,
    /// which waits for the new limit, then fails the job without running it.
    pub(super) async fn answer_memory_request(&self, name: &str) {
        // The container's limit is read while the executor compiles, not once it asks.
        let (line, current) = tokio::join!(self.first_stdout_line(name), self.inspect(name));
        let lowered = match (line, current) {
            (Ok(line), Ok(Some(current))) => match frame::parse_run_memory_request(&line) {
                // (A container adopted after it ended has nothing left to run.)
                Some(bytes) if current.state.and_then(|s| s.running) == Some(true) => {
                    let current = current.host_config.and_then(|h| h.memory);
                    self.set_memory(name, bytes, current.unwrap_or(0)).await
                }
                _ => Ok(()),
            },
            (Ok(_), Ok(None)) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Err(e) = lowered {
            tracing::warn!(container = %name, error = %e, "cannot set the run step's memory limit");
        }
    }

    /// The first line of the container's standard output (without its newline, at most a few
    /// bytes), read from its log as it comes; empty when the container ends without one.
    pub(super) async fn first_stdout_line(&self, name: &str) -> Result<Vec<u8>, BackendError> {
        const LONGEST: usize = 64;
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(false)
            .follow(true)
            .build();
        let mut logs = self.waiter.logs(name, Some(options));
        let mut line = Vec::new();
        while let Some(chunk) = logs.next().await {
            if let LogOutput::StdOut { message } =
                chunk.map_err(|e| daemon("follow the container's log", e))?
            {
                let end = message.iter().position(|b| *b == b'\n');
                line.extend_from_slice(&message[..end.unwrap_or(message.len())]);
                if end.is_some() || line.len() > LONGEST {
                    line.truncate(LONGEST);
                    return Ok(line);
                }
            }
        }
        Ok(Vec::new())
    }

    /// Sets the container's memory limit, with no swap, to `bytes`; only ever lower than the
    /// `current` one (0: none).
    pub(super) async fn set_memory(
        &self,
        name: &str,
        bytes: u64,
        current: i64,
    ) -> Result<(), BackendError> {
        let bytes =
            i64::try_from(bytes).map_err(|_| executor(format!("{bytes} bytes of memory")))?;
        if current > 0 && bytes > current {
            return Err(executor(format!(
                "the executor asked for {bytes} bytes of memory, more than the container's {current}"
            )));
        }
        let update = ContainerUpdateBody {
            memory: Some(bytes),
            memory_swap: Some(bytes),
            ..ContainerUpdateBody::default()
        };
        self.docker
            .update_container(name, update)
            .await
            .map_err(|e| daemon("lower the container's memory limit", e))
    }

    /// Waits for the container to stop; its exit code.
    pub(super) async fn wait_exit(&self, name: &str) -> Result<i64, BackendError> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut waiting = self.waiter.wait_container(name, Some(options));
        match waiting.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit code as an error.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(daemon("wait for the container", e)),
            None => Err(executor(
                "the daemon ended the wait without an answer".into(),
            )),
        }
    }
}
