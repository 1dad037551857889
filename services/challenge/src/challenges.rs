//! Challenges from start to final answer: start (after policy), verify a
//! passcode (with lockout), status, and the one way a challenge ends.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;
use vigil_core::{ChallengeId, DeliveryId, PhoneNumber, UserId, Username};
use vigil_proto::{
    events::{
        AuthenticationKind, AuthenticationUsage, ChallengeCompleted, ChallengeCreated, Channel, DeliveryRequested,
        VoiceMode,
    },
    rpc,
    v1::{Decision, Factor, Reason},
};

use crate::{
    caps,
    login::{self, Counted},
    otp_factors::OtpCheck,
    policy::{self, Verdict},
    push,
    service::{Service, ServiceError, factor_kind, factor_of, parse_provider, timestamp},
    state::{ChallengeState, parse_reason, reason_str},
    store::{self, ChallengeRow, UserDetail},
    unlocked_logins::Claimed,
};

impl Service {
    pub async fn start(&self, req: rpc::StartChallengeRequest) -> Result<rpc::StartChallengeReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let challenge_id = ChallengeId::parse(&req.challenge_id)
            .map_err(|e| ServiceError::InvalidArgument(format!("challenge_id: {e}")))?;
        let Ok(username) = Username::parse(&req.username) else {
            return Ok(deny(Reason::InvalidRequest, "the username is not valid".into()));
        };
        // A code typed with the login and right, from a user with nothing to
        // clear, is most logins: tried first without the user's lock, in
        // statements shared with the other such logins of the moment
        // (`unlocked_logins`). The rest, and any doubt, take the lock.
        let remembers = req.policy.as_ref().is_some_and(|p| p.remember_minutes > 0);
        let optimistic = !req.passcode.is_empty() && !remembers;
        let counted = (!req.counted_by_preauth).then_some("authenticate");
        let read = match self
            .count_and_read(&provider, &username, req.policy.as_ref(), counted, optimistic)
            .await?
        {
            Counted::Limited(message) => return Ok(deny(Reason::RateLimited, message)),
            Counted::Passed(read) => read,
        };
        let start = Start {
            req: &req,
            provider: &provider,
            challenge_id,
            username: &username,
        };
        if let Some(read) = read {
            match self.start_as(Try::Unlocked(read), &start).await? {
                Outcome::Written { reply, urgent } => {
                    self.wake_relay(urgent);
                    return Ok(*reply);
                }
                Outcome::Refused(reply) => return Ok(*reply),
                Outcome::TakeLock => {}
            }
        }
        let mut conn = vigil_runtime::acquire(&self.pool).await?;
        let mut tx = Connection::begin(&mut *conn).await?;
        match self.start_as(Try::Locked(&mut tx), &start).await? {
            Outcome::Written { reply, urgent } => {
                tx.commit().await?;
                self.wake_relay(urgent);
                Ok(*reply)
            }
            Outcome::Refused(reply) => {
                tx.rollback().await?;
                Ok(*reply)
            }
            Outcome::TakeLock => {
                // Only an optimistic try leaves a login to the lock: a
                // locked one that asks is a bug, and the login is denied.
                tx.rollback().await?;
                tracing::error!(challenge_id = %challenge_id, "a start under the user's lock asked for the lock");
                Ok(deny(Reason::Unavailable, "the login could not be decided".into()))
            }
        }
    }

    /// A delivery goes out at once: the user waits for it. Other events
    /// (usage, a TOTP challenge's start, an end answered in the reply) no
    /// login waits on, so they may share the relay's next batch.
    fn wake_relay(&self, urgent: bool) {
        if urgent {
            self.outbox.notify();
        } else {
            self.outbox.notify_unhurried();
        }
    }

    /// Decides a login and writes what it decided: see [`Try`]. An
    /// optimistic try that would do anything but approve a right TOTP code
    /// returns [`Outcome::TakeLock`] before it writes.
    async fn start_as(&self, how: Try<'_>, start: &Start<'_>) -> Result<Outcome, ServiceError> {
        let optimistic = matches!(how, Try::Unlocked(_));
        let Start {
            req,
            provider,
            challenge_id,
            username,
        } = *start;
        let refuse = |reason: Reason, message: String| Ok(Outcome::Refused(Box::new(deny(reason, message))));
        let now = self.clock.now();
        let policy = req.policy.as_ref();
        // Under the lock the user row is locked so that a bypass is used once.
        let (mut db, facts) = match how {
            Try::Locked(db) => {
                let facts = login::gather(db, provider, username, policy, true).await?;
                (Some(db), facts)
            }
            Try::Unlocked(facts) => (None, *facts),
        };
        let verdict = policy::decide(facts.user_facts.as_ref(), facts.login, now);
        let user_id = facts.user.as_ref().map(|u| u.id);
        if verdict != Verdict::Challenge {
            let Some(db) = db else {
                return Ok(Outcome::TakeLock);
            };
            if verdict.is_bypass_use()
                && let Some(id) = user_id
            {
                store::consume_bypass(db, id, now).await?;
            }
            login::record(
                db,
                provider,
                username.as_str(),
                user_id,
                "authenticate",
                policy,
                (verdict.decision(), verdict.reason()),
                None,
                now,
            )
            .await?;
            // Passes without a challenge are recorded for billing, never billed.
            if let (Verdict::Allow(reason), Some(id)) = (verdict, user_id) {
                let kind = match reason {
                    Reason::TrustedNetwork => AuthenticationKind::TrustedNetwork,
                    Reason::Bypass => AuthenticationKind::Bypass,
                    _ => AuthenticationKind::Remembered,
                };
                let usage = AuthenticationUsage {
                    challenge_id: String::new(),
                    user_id: UserId::from_uuid(id).to_string(),
                    factor: Factor::Unspecified as i32,
                    occurred_at: Some(timestamp(now)),
                    kind: kind as i32,
                    billable: false,
                };
                self.outbox.enqueue(db, provider, &usage).await?;
            }
            // Only usage, and the answer is in this reply: nothing waits on it.
            return Ok(Outcome::written(
                rpc::StartChallengeReply {
                    decision: verdict.decision() as i32,
                    reason: verdict.reason() as i32,
                    message: verdict.message().into(),
                    ..Default::default()
                },
                false,
            ));
        }
        let Some(user) = facts.user else {
            return refuse(Reason::UnknownUser, "the user is not enrolled in Vigil".into());
        };
        let factors = facts.factors;
        let wanted = Factor::try_from(req.factor).unwrap_or(Factor::Unspecified);
        // A code typed with the login answers the challenge at once.
        let one_shot = !req.passcode.is_empty();
        // No factor asked for: the user's default, else the first enrolled;
        // with a code, the first that takes typed codes.
        let usable = |kind: &str| !one_shot || is_typed(kind);
        let chosen = match factor_kind(wanted) {
            Some(kind) => factors.iter().find(|f| f.kind == kind),
            None => factors
                .iter()
                .find(|f| f.kind == user.default_factor && usable(&f.kind))
                .or_else(|| factors.iter().find(|f| usable(&f.kind))),
        };
        let Some(factor) = chosen else {
            return refuse(
                Reason::NotEnrolled,
                format!("the user has no {} factor", factor_kind(wanted).unwrap_or("second")),
            );
        };
        // Without the lock: a TOTP code only (HOTP counters and backup codes
        // are rarer and take the lock), from a user with no failures on
        // record (an approval would clear them).
        if optimistic && !(one_shot && factor.kind == "totp" && user.has_no_failures()) {
            return Ok(Outcome::TakeLock);
        }
        // Codes from an app or a backup list: nothing to deliver.
        let typed_by_user = is_typed(&factor.kind);
        if one_shot && !typed_by_user {
            return refuse(
                Reason::InvalidRequest,
                format!(
                    "a passcode answers a totp, hotp or backup code factor, not {}",
                    factor.kind
                ),
            );
        }
        let is_push = factor.kind == "push";
        if !typed_by_user && !is_push && !matches!(factor.kind.as_str(), "sms" | "voice") {
            return refuse(
                Reason::NotEnrolled,
                format!("the {} factor cannot be challenged yet", factor.kind),
            );
        }
        let device = if is_push {
            let Some(db) = db.as_deref_mut() else {
                return Ok(Outcome::TakeLock);
            };
            match self.push_device(db, provider, user.id).await? {
                Some(device) => Some(device),
                None => return refuse(Reason::NotEnrolled, "the user has no enrolled push device".into()),
            }
        } else {
            None
        };
        let matching = device
            .as_ref()
            .filter(|_| !req.no_number_matching)
            .map(|_| push::match_numbers(&mut rand::rng()));
        let factor_wire = factor_of(&factor.kind);
        let expires_at = now + self.lifetime;
        let id_text = challenge_id.to_string();
        let (code, phone) = if typed_by_user || is_push {
            (None, None)
        } else {
            let phone = PhoneNumber::parse(&factor.destination)
                .map_err(|_| ServiceError::InvalidArgument("stored phone number is invalid".into()))?;
            // A voice call is answered on the keypad: no code to type.
            let code = (factor.kind == "sms").then(|| self.codes.generate());
            (code, Some(phone))
        };
        if let Some(phone) = &phone {
            let Some(db) = db.as_deref_mut() else {
                return Ok(Outcome::TakeLock);
            };
            if let Some(capped) = caps::take(
                db,
                provider,
                &factor.kind,
                phone,
                policy.and_then(|p| p.delivery_caps.as_ref()),
                now,
            )
            .await?
            {
                // A retried request whose first try took the last delivery of
                // the hour: its challenge stands, and that is the answer.
                if let Some(existing) = store::get_challenge(db, provider, challenge_id.as_uuid(), false).await? {
                    return Ok(Outcome::Refused(Box::new(
                        self.start_reply(&existing, "challenge already started".into()),
                    )));
                }
                login::record(
                    db,
                    provider,
                    username.as_str(),
                    Some(user.id),
                    "authenticate",
                    policy,
                    (Decision::Deny, Reason::DeliveryCapped),
                    None,
                    now,
                )
                .await?;
                return Ok(Outcome::written(deny(Reason::DeliveryCapped, capped.message()), false));
            }
        }
        let mut row = ChallengeRow {
            id: challenge_id.as_uuid(),
            provider_id: provider.to_owned(),
            user_id: user.id,
            state: ChallengeState::Pending.as_str().to_owned(),
            reason: reason_str(Reason::Enrolled).to_owned(),
            code_hash: code.as_ref().map(|c| self.codes.hash(&id_text, c)),
            max_attempts: self.max_attempts,
            expires_at,
            agent_id: req.agent_id.clone(),
            client_ip: req.client_ip.clone(),
            remember_minutes: i32::try_from(facts.login.remember_minutes).unwrap_or(0),
            factor: factor.kind.clone(),
            block_user_on_fraud: policy.is_none_or(|p| p.block_user_on_fraud),
            match_number: matching.as_ref().and_then(|(right, _)| i16::try_from(*right).ok()),
            attempts: 0,
        };
        // A code typed with the login is checked first, so that the challenge
        // is written once, in the state its answer leaves it. One audit
        // record, the answer's. Without the lock only a right code goes on,
        // its step claimed by the statement that writes the challenge.
        let mut claimed_step = None;
        let answered = match db.as_deref_mut() {
            None => match self.totp_step(provider, user.id, &factor.token, &req.passcode, now)? {
                Ok(step) => {
                    claimed_step = Some(step);
                    Some(Answered::approved())
                }
                Err(_) => return Ok(Outcome::TakeLock),
            },
            Some(db) if one_shot => Some(
                self.answer(db, provider, (&row, &user, &factor.token), &req.passcode, now)
                    .await?,
            ),
            Some(_) => None,
        };
        if let Some(answered) = &answered {
            row.attempts += i32::from(answered.wrong);
            // Left open after a wrong code, the reason still says why: a
            // retried request gets the answer its first try got.
            let (state, reason) = answered
                .end
                .unwrap_or((row.state(), Reason::try_from(answered.reply.reason).unwrap_or_default()));
            row.state = state.as_str().to_owned();
            row.reason = reason_str(reason).to_owned();
        }
        let user_id = UserId::from_uuid(user.id).to_string();
        let mut events = self.outbox.batch(provider);
        events.push(&ChallengeCreated {
            challenge_id: id_text.clone(),
            user_id: user_id.clone(),
            agent_id: req.agent_id.clone(),
            factor: factor_wire as i32,
            expires_at: Some(timestamp(expires_at)),
        })?;
        // What telephony delivers, if anything: every delivery names the
        // challenge and ends with it.
        let base = DeliveryRequested {
            delivery_id: DeliveryId::new().to_string(),
            challenge_id: id_text.clone(),
            expires_at: Some(timestamp(expires_at)),
            ..Default::default()
        };
        let delivery = if let Some(device) = &device {
            let choices = matching.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
            let ask = if choices.is_empty() {
                "Approve or deny."
            } else {
                "Pick the number shown on the sign-in screen."
            };
            Some(DeliveryRequested {
                channel: Channel::Push as i32,
                destination: device.push_token.clone(),
                body: format!("Are you signing in as {}? {ask}", user.username),
                device_id: device.device_id.to_string(),
                device_public_key: device.public_key.to_vec(),
                match_choices: choices,
                ..base
            })
        } else if let Some(phone) = phone.as_ref().filter(|_| factor.kind == "voice") {
            // With a PIN the user proves knowledge too: PIN then #.
            let (mode, instruction) = if user.pin_hash.is_some() {
                (VoiceMode::Pin, "enter your PIN followed by the pound key")
            } else {
                (VoiceMode::PressPound, "press the pound key")
            };
            Some(DeliveryRequested {
                channel: Channel::Voice as i32,
                destination: phone.as_str().to_owned(),
                body: format!(
                    "This is Vigil. Someone is signing in as {}. To approve, {instruction}. \
                     If this was not you, press zero then pound to report fraud.",
                    user.username
                ),
                voice_mode: mode as i32,
                // For the provider's greeting template, if it has one.
                username: user.username.clone(),
                ..base
            })
        } else if let (Some(code), Some(phone)) = (&code, &phone) {
            let minutes = (self.lifetime.num_seconds() + 59) / 60;
            Some(DeliveryRequested {
                channel: Channel::Sms as i32,
                destination: phone.as_str().to_owned(),
                body: self
                    .sms_template
                    .replace("{code}", code)
                    .replace("{minutes}", &minutes.to_string()),
                // The user may also reply with the code, YES, NO or FRAUD.
                expect_reply: true,
                // For the provider's message template, if it has one.
                code: code.clone(),
                ..base
            })
        } else {
            None
        };
        if let Some(delivery) = &delivery {
            events.push(delivery)?;
        }
        // One billable authentication: a challenge issued to a user.
        events.push(&AuthenticationUsage {
            challenge_id: id_text.clone(),
            user_id,
            factor: factor_wire as i32,
            occurred_at: Some(timestamp(now)),
            kind: AuthenticationKind::Challenge as i32,
            billable: true,
        })?;
        let end = answered.as_ref().and_then(|a| a.end);
        if let Some((state, reason)) = end {
            events.push(&completed_event(&row, state, reason))?;
        }
        // One audit record: the answer's when the code came with the login.
        let attempt = match &answered {
            Some(answered) => login::answer_attempt(&row, &user.username, "authenticate", answered.verdict(), now),
            None => login::attempt(
                provider,
                username.as_str(),
                Some(user.id),
                "authenticate",
                policy,
                (Decision::Challenge, Reason::Enrolled),
                Some(row.id),
                now,
            ),
        };
        match (db, claimed_step) {
            (Some(db), _) => {
                if !store::insert_challenge(db, &row, now, &attempt, &events.rows()).await? {
                    // A retried request: the challenge it created the first
                    // time stands, and nothing of this attempt is kept.
                    // (Found here rather than looked up first: one
                    // statement fewer on every login.)
                    return match store::get_challenge(db, provider, challenge_id.as_uuid(), false).await? {
                        Some(existing) => Ok(Outcome::Refused(Box::new(
                            self.start_reply(&existing, "challenge already started".into()),
                        ))),
                        None => refuse(Reason::ChallengeNotFound, "no such challenge".into()),
                    };
                }
            }
            (None, Some(step)) => {
                let claimed = Claimed {
                    row: row.clone(),
                    now,
                    attempt: (&attempt).into(),
                    traceparent: vigil_bus::trace::current_traceparent(),
                    events,
                    user_version: user.version,
                    step,
                };
                // Nothing written: the step was claimed or the user changed
                // since the read, or the challenge exists (a retried
                // request). The lock sorts out which.
                if !self.unlocked.write(claimed).await? {
                    return Ok(Outcome::TakeLock);
                }
            }
            (None, None) => return Ok(Outcome::TakeLock),
        }
        let urgent = delivery.is_some();
        if let Some(answered) = answered {
            if let Some((state, reason)) = end {
                count_outcome(&row, state, reason, now);
            }
            let reply = answered.reply;
            tracing::info!(challenge_id = %id_text, factor = %factor.kind, reason = reason_str(Reason::try_from(reply.reason).unwrap_or_default()), "challenge started and answered");
            return Ok(Outcome::written(
                rpc::StartChallengeReply {
                    decision: reply.decision,
                    reason: reply.reason,
                    message: reply.message,
                    challenge_id: id_text,
                    state: reply.state,
                    expires_at: Some(timestamp(expires_at)),
                    match_number: 0,
                    attempts_remaining: reply.attempts_remaining,
                    error: None,
                },
                urgent,
            ));
        }
        let match_number = matching.as_ref().map_or(0, |(right, _)| *right);
        let message = match (&phone, factor.kind.as_str()) {
            (Some(phone), "voice") => format!("Answer the call to {} to approve", phone.masked()),
            (Some(phone), _) => format!("Enter the code sent to {}", phone.masked()),
            (None, "push") if match_number > 0 => {
                format!("Approve the sign-in on your phone and pick {match_number}")
            }
            (None, "push") => "Approve the sign-in on your phone".to_owned(),
            (None, "backup_code") => "Enter one of your backup codes".to_owned(),
            (None, _) => "Enter the code from your authenticator app".to_owned(),
        };
        tracing::info!(challenge_id = %id_text, factor = %factor.kind, to = %phone.as_ref().map(PhoneNumber::masked).unwrap_or_default(), "challenge started");
        Ok(Outcome::written(
            rpc::StartChallengeReply {
                decision: Decision::Challenge as i32,
                reason: Reason::Enrolled as i32,
                message,
                challenge_id: id_text,
                state: ChallengeState::Pending.to_proto() as i32,
                expires_at: Some(timestamp(expires_at)),
                match_number,
                attempts_remaining: 0,
                error: None,
            },
            urgent,
        ))
    }

    fn start_reply(&self, row: &ChallengeRow, message: String) -> rpc::StartChallengeReply {
        let state = row.state();
        let reason = parse_reason(&row.reason);
        // A retried login in one call gets the answer its first try got: a
        // wrong code leaves the challenge open, with the reason on it.
        let wrong = !state.is_terminal() && matches!(reason, Reason::WrongCode | Reason::AlreadyUsed);
        rpc::StartChallengeReply {
            decision: match state {
                ChallengeState::Approved => Decision::Allow,
                s if s.is_terminal() || wrong => Decision::Deny,
                _ => Decision::Challenge,
            } as i32,
            reason: reason as i32,
            message: if wrong {
                "the code given with this login was not accepted; the challenge is still open".into()
            } else {
                message
            },
            challenge_id: ChallengeId::from_uuid(row.id).to_string(),
            state: state.to_proto() as i32,
            expires_at: Some(timestamp(row.expires_at)),
            match_number: row.match_number.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            attempts_remaining: if wrong {
                u32::try_from(row.max_attempts - row.attempts).unwrap_or(0)
            } else {
                0
            },
            error: None,
        }
    }

    pub async fn verify(&self, req: rpc::VerifyRequest) -> Result<rpc::VerifyReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let reply = verify_reply;
        let not_found = rpc::VerifyReply {
            decision: Decision::Deny as i32,
            reason: Reason::ChallengeNotFound as i32,
            message: "no such challenge".into(),
            ..Default::default()
        };
        let Ok(challenge_id) = ChallengeId::parse(&req.challenge_id) else {
            return Ok(not_found);
        };
        // Read without a lock first: the rate limits are keyed by it (they
        // commit on their own, on the same connection), and a right code
        // from a user with nothing to clear is settled from it.
        let mut conn = vigil_runtime::acquire(&self.pool).await?;
        let read = store::read_verification(&mut conn, &provider, challenge_id.as_uuid(), false).await?;
        let Some(read) = read else {
            return Ok(not_found);
        };
        if let Some((message, remaining)) = self
            .verify_rate_limited(&mut conn, &req, &read.challenge, &read.user.username)
            .await?
        {
            return Ok(reply(
                Decision::Deny,
                Reason::RateLimited,
                read.challenge.state(),
                &message,
                remaining,
            ));
        }
        if let Some(approved) = self.approve_unlocked(&mut conn, &read, &req.passcode).await? {
            return Ok(approved);
        }
        let mut tx = Connection::begin(&mut *conn).await?;
        let Some(store::Verification {
            challenge: row,
            user,
            token,
        }) = store::read_verification(&mut tx, &provider, challenge_id.as_uuid(), true).await?
        else {
            return Ok(not_found);
        };
        let state = row.state();
        let now = self.clock.now();
        if state.is_terminal() {
            let (reason, message) = match state {
                ChallengeState::Approved => (
                    Reason::AlreadyUsed,
                    "this challenge was already answered; its code cannot be used again",
                ),
                ChallengeState::Expired => (Reason::Expired, "the challenge expired"),
                _ => (parse_reason(&row.reason), "the challenge has ended"),
            };
            // A late or replayed answer is audited like every decision: an
            // admin looking at a login sees the code tried again.
            login::record_answer(&mut tx, &row, &user.username, "verify", (Decision::Deny, reason), now).await?;
            tx.commit().await?;
            return Ok(reply(Decision::Deny, reason, state, message, 0));
        }
        if now >= row.expires_at {
            self.complete(&mut tx, &row, ChallengeState::Expired, Reason::Expired, now)
                .await?;
            tx.commit().await?;
            self.outbox.notify();
            return Ok(reply(
                Decision::Deny,
                Reason::Expired,
                ChallengeState::Expired,
                "the challenge expired",
                0,
            ));
        }
        let answered = self
            .answer(&mut tx, &provider, (&row, &user, &token), &req.passcode, now)
            .await?;
        self.settle(&mut tx, &row, &user, &answered, None, now).await?;
        tx.commit().await?;
        // The answer is in this reply; its end's event is for watchers
        // (WatchAuth), which may wait for the relay's next batch.
        self.outbox.notify_unhurried();
        tracing::info!(challenge_id = %challenge_id, reason = reason_str(Reason::try_from(answered.reply.reason).unwrap_or_default()), "passcode verified");
        Ok(answered.reply)
    }

    /// A right code for an open challenge, from a user with nothing to clear
    /// and no approval to remember, approved without the lock: one statement
    /// that writes nothing if the challenge was answered, the user changed
    /// or the TOTP step was used since `read` (see [`store::Unlocked`]).
    /// `None`: nothing was written, and the locked path decides.
    async fn approve_unlocked(
        &self,
        conn: &mut PgConnection,
        read: &store::Verification,
        passcode: &str,
    ) -> Result<Option<rpc::VerifyReply>, ServiceError> {
        let (row, user) = (&read.challenge, &read.user);
        let now = self.clock.now();
        let remembers = row.remember_minutes > 0 && !row.client_ip.is_empty();
        if row.state().is_terminal() || now >= row.expires_at || !user.has_no_failures() || remembers {
            return Ok(None);
        }
        let step = match row.factor.as_str() {
            "totp" => match self.totp_step(&row.provider_id, row.user_id, &read.token, passcode, now)? {
                Ok(step) => Some(step),
                Err(_) => return Ok(None),
            },
            "sms" if self.code_matches(row, passcode) => None,
            _ => return Ok(None),
        };
        let answered = Answered::approved();
        let unlocked = store::Unlocked {
            user_version: user.version,
            step,
        };
        if !self.settle(conn, row, user, &answered, Some(unlocked), now).await? {
            return Ok(None);
        }
        self.outbox.notify_unhurried();
        tracing::info!(challenge_id = %ChallengeId::from_uuid(row.id), reason = reason_str(Reason::Approved), "passcode verified");
        Ok(Some(answered.reply))
    }

    /// Writes an answer to `row` (see [`store::settle_answer`]): the audit
    /// record, the attempt, the end and its event, in one statement.
    /// Returns whether the challenge moved.
    async fn settle(
        &self,
        conn: &mut PgConnection,
        row: &ChallengeRow,
        user: &UserDetail,
        answered: &Answered,
        unlocked: Option<store::Unlocked>,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let mut events = self.outbox.batch(&row.provider_id);
        if let Some((state, reason)) = answered.end {
            events.push(&completed_event(row, state, reason))?;
        }
        let attempt = login::answer_attempt(row, &user.username, "verify", answered.verdict(), now);
        let end = answered.end.map(|(state, reason)| (state, reason_str(reason)));
        let moved =
            store::settle_answer(conn, row, &attempt, answered.wrong, end, &events.rows(), now, unlocked).await?;
        if let Some((state, reason)) = answered.end
            && moved
        {
            count_outcome(row, state, reason, now);
        }
        Ok(moved)
    }

    /// Whether `passcode` is the code sent for `row` (compared as keyed hashes).
    fn code_matches(&self, row: &ChallengeRow, passcode: &str) -> bool {
        let id_text = ChallengeId::from_uuid(row.id).to_string();
        row.code_hash
            .as_deref()
            .is_some_and(|stored| self.codes.matches(&id_text, passcode, stored))
    }

    /// Checks `passcode` against `row`, an open challenge (locked in `tx`,
    /// or about to be written by it) with its user, and writes what follows
    /// for the user and the token: approval, or a failed attempt (which may
    /// lock the user out). The challenge's own row and the audit record are
    /// the caller's to write, as [`Answered`] says.
    async fn answer(
        &self,
        tx: &mut PgConnection,
        provider: &str,
        (row, user, token): (&ChallengeRow, &UserDetail, &store::OtpToken),
        passcode: &str,
        now: DateTime<Utc>,
    ) -> Result<Answered, ServiceError> {
        let reply = verify_reply;
        let state = row.state();
        let check = if is_typed(&row.factor) {
            self.check_otp(tx, provider, row.user_id, &row.factor, token, passcode, now)
                .await?
        } else if self.code_matches(row, passcode) {
            OtpCheck::Accepted
        } else {
            OtpCheck::Wrong
        };
        let answered = if check == OtpCheck::Accepted {
            self.approved(tx, row, Some(user), now).await?;
            Answered::approved()
        } else {
            let remaining = row.max_attempts - (row.attempts + 1);
            let locked = self.failed(tx, user, now).await?;
            let (end, reply) = if locked {
                let end = (ChallengeState::Denied, Reason::LockedOut);
                let message = "too many failed attempts; the user is locked out for now";
                (Some(end), reply(Decision::Deny, end.1, end.0, message, 0))
            } else if remaining <= 0 {
                let end = (ChallengeState::Denied, Reason::TooManyAttempts);
                let message = "too many wrong codes; the challenge is denied";
                (Some(end), reply(Decision::Deny, end.1, end.0, message, 0))
            } else if check == OtpCheck::AlreadyUsed {
                let message = "that code was already used; wait for the next one";
                (
                    None,
                    reply(Decision::Deny, Reason::AlreadyUsed, state, message, remaining),
                )
            } else {
                let message = "the code is not correct";
                (
                    None,
                    reply(Decision::Deny, Reason::WrongCode, state, message, remaining),
                )
            };
            Answered {
                reply,
                wrong: true,
                end,
            }
        };
        Ok(answered)
    }

    pub async fn status(&self, req: rpc::StatusRequest) -> Result<rpc::StatusReply, ServiceError> {
        let provider = parse_provider(&req.provider_id)?.to_string();
        let not_found = rpc::StatusReply {
            reason: Reason::ChallengeNotFound as i32,
            message: "no such challenge".into(),
            ..Default::default()
        };
        let Ok(challenge_id) = ChallengeId::parse(&req.challenge_id) else {
            return Ok(not_found);
        };
        // A plain read, outside any transaction: followers ask this of every
        // challenge they watch, at each of its moves.
        let mut connection = self.pool.acquire().await?;
        let Some(row) = store::get_challenge(&mut connection, &provider, challenge_id.as_uuid(), false).await? else {
            return Ok(not_found);
        };
        let now = self.clock.now();
        // Report expiry the moment it is due, not when the sweep next runs.
        let (state, reason) = if !row.state().is_terminal() && now >= row.expires_at {
            let ended = self
                .complete_alone(&mut connection, &row, ChallengeState::Expired, Reason::Expired, now)
                .await?;
            if ended {
                (ChallengeState::Expired, Reason::Expired)
            } else {
                // Ended just before, by an answer or the sweep: as it is now.
                let Some(ended) = store::get_challenge(&mut connection, &provider, row.id, false).await? else {
                    return Ok(not_found);
                };
                (ended.state(), parse_reason(&ended.reason))
            }
        } else {
            (row.state(), parse_reason(&row.reason))
        };
        Ok(rpc::StatusReply {
            state: state.to_proto() as i32,
            reason: reason as i32,
            message: format!("the challenge is {}", state.as_str()),
            expires_at: Some(timestamp(row.expires_at)),
            error: None,
        })
    }

    /// After an approval: the failure count starts again, and the agent +
    /// user + address is remembered when the agent asks for it.
    /// `user` is the user's row as locked by the caller, if it has it: a
    /// user with no failures on record needs no write.
    pub async fn approved(
        &self,
        tx: &mut PgConnection,
        row: &ChallengeRow,
        user: Option<&UserDetail>,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let clean = user.is_some_and(UserDetail::has_no_failures);
        if !clean {
            store::set_failures(tx, row.user_id, 0, None, None).await?;
        }
        if row.remember_minutes > 0 && !row.client_ip.is_empty() {
            store::remember_approval(tx, &row.provider_id, &row.agent_id, row.user_id, &row.client_ip, now).await?;
        }
        Ok(())
    }

    /// Counts a failed answer against the user; `true` when it locks them out.
    pub async fn failed(
        &self,
        tx: &mut PgConnection,
        user: &UserDetail,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let state = self
            .lockout
            .record_failure(user.failed_attempts, user.failure_window_start, now);
        store::set_failures(
            tx,
            user.id,
            state.failed_attempts,
            Some(state.window_start),
            state.locked_until,
        )
        .await?;
        if state.locked_until.is_some() {
            tracing::warn!(user_id = %UserId::from_uuid(user.id), "user locked out after repeated failures");
        }
        Ok(state.locked_until.is_some())
    }

    /// [`Self::complete`] in a transaction of its own, committed, and the
    /// relay woken if the challenge moved.
    pub async fn complete_alone(
        &self,
        connection: &mut PgConnection,
        row: &ChallengeRow,
        state: ChallengeState,
        reason: Reason,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let mut tx = connection.begin().await?;
        let moved = self.complete(&mut tx, row, state, reason, now).await?;
        tx.commit().await?;
        if moved {
            self.outbox.notify();
        }
        Ok(moved)
    }

    /// Ends `row` in a terminal state and records the event, in `tx`.
    pub async fn complete(
        &self,
        tx: &mut PgConnection,
        row: &ChallengeRow,
        state: ChallengeState,
        reason: Reason,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        if !store::transition(tx, row.id, state, reason_str(reason), now).await? {
            return Ok(false);
        }
        self.outbox
            .enqueue(tx, &row.provider_id, &completed_event(row, state, reason))
            .await?;
        count_outcome(row, state, reason, now);
        Ok(true)
    }
}

/// A start request, parsed and past the rate limits.
#[derive(Clone, Copy)]
struct Start<'a> {
    req: &'a rpc::StartChallengeRequest,
    provider: &'a str,
    challenge_id: ChallengeId,
    username: &'a Username,
}

/// How a start is decided.
enum Try<'a> {
    /// In this transaction, holding the user's lock.
    Locked(&'a mut PgConnection),
    /// Optimistically, on these facts read without a lock by a statement
    /// shared with other logins: only a right TOTP code goes through, its
    /// challenge written by a shared statement too (`unlocked_logins`),
    /// guarded by the user's row as read and claiming the code's step (see
    /// [`store::Unlocked`]).
    Unlocked(Box<login::Facts>),
}

/// What a try at a start came to.
enum Outcome {
    /// Written: kept (committed, under the lock), then this answer.
    /// `urgent` when a delivery waits on the relay.
    Written {
        reply: Box<rpc::StartChallengeReply>,
        urgent: bool,
    },
    /// Nothing of this try is kept, and this is the answer.
    Refused(Box<rpc::StartChallengeReply>),
    /// The optimistic try wrote nothing and leaves the login to the lock.
    TakeLock,
}

impl Outcome {
    fn written(reply: rpc::StartChallengeReply, urgent: bool) -> Self {
        Self::Written {
            reply: Box::new(reply),
            urgent,
        }
    }
}

fn deny(reason: Reason, message: String) -> rpc::StartChallengeReply {
    rpc::StartChallengeReply {
        decision: Decision::Deny as i32,
        reason: reason as i32,
        message,
        ..Default::default()
    }
}

/// What answering a challenge decided for the challenge itself.
struct Answered {
    reply: rpc::VerifyReply,
    /// A wrong code: one more attempt on the challenge.
    wrong: bool,
    /// The state and reason the answer ends the challenge in, if it does.
    end: Option<(ChallengeState, Reason)>,
}

impl Answered {
    fn approved() -> Self {
        Self {
            reply: verify_reply(
                Decision::Allow,
                Reason::Approved,
                ChallengeState::Approved,
                "approved",
                0,
            ),
            wrong: false,
            end: Some((ChallengeState::Approved, Reason::Approved)),
        }
    }

    /// The decision and its reason, as the audit trail records them.
    fn verdict(&self) -> (Decision, Reason) {
        (
            Decision::try_from(self.reply.decision).unwrap_or_default(),
            Reason::try_from(self.reply.reason).unwrap_or_default(),
        )
    }
}

/// The event of a challenge's end: it goes out in the transaction that
/// writes that end.
fn completed_event(row: &ChallengeRow, state: ChallengeState, reason: Reason) -> ChallengeCompleted {
    ChallengeCompleted {
        challenge_id: ChallengeId::from_uuid(row.id).to_string(),
        user_id: UserId::from_uuid(row.user_id).to_string(),
        state: state.to_proto() as i32,
        reason: reason as i32,
    }
}

/// Counts a challenge's end and how long it took, by factor. Counted when
/// the transition is written: a transaction that then rolls back (rare: the
/// commit itself failing) counts once too often.
fn count_outcome(row: &ChallengeRow, state: ChallengeState, reason: Reason, now: DateTime<Utc>) {
    let factor = row.factor.clone();
    metrics::counter!(
        "vigil_challenge_outcomes_total",
        "factor" => factor.clone(),
        "state" => state.as_str(),
        "reason" => vigil_proto::enum_label(reason.as_str_name(), "REASON_"),
    )
    .increment(1);
    // The id is a UUIDv7 minted when the login asked: its time is the start.
    if let Some(started) = row.id.get_timestamp().and_then(|ts| {
        let (secs, nanos) = ts.to_unix();
        DateTime::<Utc>::from_timestamp(i64::try_from(secs).ok()?, nanos)
    }) {
        let took = (now - started).to_std().unwrap_or_default();
        metrics::histogram!("vigil_challenge_duration_seconds", "factor" => factor, "state" => state.as_str())
            .record(took.as_secs_f64());
    }
}

/// Factors answered with a code the user types: nothing is delivered.
fn is_typed(kind: &str) -> bool {
    matches!(kind, "totp" | "hotp" | "backup_code")
}

fn verify_reply(
    decision: Decision,
    reason: Reason,
    state: ChallengeState,
    message: &str,
    remaining: i32,
) -> rpc::VerifyReply {
    rpc::VerifyReply {
        decision: decision as i32,
        reason: reason as i32,
        message: message.to_owned(),
        state: state.to_proto() as i32,
        attempts_remaining: remaining.max(0) as u32,
        error: None,
    }
}

/// Ids in events are typed strings; the database keeps UUIDs.
pub fn challenge_uuid(id: &str) -> Option<Uuid> {
    ChallengeId::parse(id).ok().map(|c| c.as_uuid())
}
