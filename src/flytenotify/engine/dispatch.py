"""Dispatch: claim due deliveries, send them, write back what happened.

The loop leases due rows, hands each to its channel in its own task within
the in-flight limits (per destination, adapted to its answers by
:mod:`flytenotify.engine.inflight`; and the process's budget), and claims no
more rows than there is room for. It writes outcomes back in batches: the
outcomes gathered since its last look and its next claim share one round trip
and one commit. A lease expires, so a crashed process never strands a row; it
is renewed while its send is in progress, so it can be short (a restarted
process resumes a dead one's work within seconds) while a slow but live send
is never taken over by another process.
It sleeps until woken by new work, a finished send, or the next due retry; it
never polls in a tight loop.

Alert storms: rows of one group claimed together (the ledger opens the
group's window as it hands them out) are sent as digests of at most
``max_size`` executions, one message each; a group claim of one row is an
ordinary message. Every delivery a message carried gets that message's
outcome, id and size: they are delivered, retried and dead-lettered together.

At-least-once: a row is marked delivered only after its channel said the
provider accepted it. A crash between the provider's answer and our write
sends that one message again on recovery; the idempotency key (email
Message-ID, PagerDuty dedup_key, webhook delivery id) lets the far side drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from flytenotify.channels import registry
from flytenotify.channels.base import Channel, Outcome, SendResult
from flytenotify.config import Settings
from flytenotify.domain import (
    DEFAULT_GROUP_RULE,
    ActionOutcome,
    Answer,
    Delivery,
    DeliveryStatus,
    Digest,
    Thread,
    phase_name,
)
from flytenotify.engine.inflight import AimdRule, InflightLimiter, signal_of
from flytenotify.engine.resolve import INBOX, UNROUTABLE, RoutingError, refusal, route
from flytenotify.store.base import (
    OTHER_CHANNELS,
    Completion,
    Conversation,
    DeliveryFilter,
    Store,
    channel_key,
)
from flytenotify.store.errors import StoreFull

log = logging.getLogger("flytenotify.dispatch")

_IDLE_POLL = 2.0  # fallback wake-up, in case another process enqueued work
_RECHECK = 0.05  # the shortest sleep: something is due that the last look did not claim
_STORE_RETRY_MIN, _STORE_RETRY_MAX = 1.0, 30.0  # backoff while the ledger is unreachable
_ATTEMPT_TIMEOUT = 90.0  # a guard above the channels' own (shorter) timeouts
# Renewals per lease: two may fail (a database hiccup) before the lease passes.
_RENEWALS_PER_LEASE = 3
# Closed alert-storm groups are deleted this long after they closed (a margin
# far beyond any clock skew between replicas), looked for this often.
_GROUP_KEEP_S = 3600.0
_PRUNE_EVERY_S = 600.0
# How soon a message tries again while another delivery is sending the first
# message of its conversation (usually done within a second).
_FIRST_MESSAGE_WAIT = 2.0
# A digest's message_id; it carries at most [grouping] max_size (1,000) rows.
DIGEST_PREFIX = "digest:"
DIGEST_MOST = 1000


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with equal jitter, capped; a provider's Retry-After wins if longer."""
    exponential = min(cap, base * 2 ** max(0, attempt - 1))
    delay = exponential / 2 + random.uniform(0, exponential / 2)
    return float(max(delay, retry_after or 0.0))


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


AttemptObserver = Callable[[Delivery, SendResult, float], None]


@dataclass(eq=False, slots=True)
class _Flight:
    """One message in flight: its task, and whether the guard abandoned it.

    ``delivery`` is what the channel is handed: a row, or for a digest the
    first of its rows with ``digest`` set.
    """

    delivery: Delivery
    key: str  # the claim key it counts against (its channel, or OTHER_CHANNELS)
    # Its channel and the delivery routed (Dispatcher._prepare), or why it is not sent.
    prepared: tuple[Channel, Delivery] | SendResult
    # Its execution's conversation with its destination, joined with its claim's
    # (None: not part of one, or the ledger could not say; see _join_conversations).
    conversation: Conversation | None = None
    task: asyncio.Task[None] | None = None
    overdue: bool = False

    @property
    def message_id(self) -> str:
        digest = self.delivery.digest
        return digest.id if digest is not None else f"single:{self.delivery.idempotency_key}"


def _refused(delivery: Delivery, settings: Settings) -> str | None:
    """Why ``[allow]`` forbids ``delivery``: its recipient, or for an inline email
    (one message to To + Cc + Bcc, which cannot go to some of them only) any of its addresses."""
    envelope = delivery.message.envelope
    if envelope is None or delivery.channel == INBOX:
        return refusal(delivery.channel, delivery.recipient, settings)
    reasons = [refusal(delivery.channel, box.address, settings) for box in envelope.everyone]
    found = [reason for reason in reasons if reason is not None]
    return "; ".join(found) if found else None


def messages(deliveries: Sequence[Delivery], max_size: Callable[[str], int]) -> list[Delivery]:
    """The claimed rows as the messages to send, in claim order.

    Rows of one group are sent in digests of at most ``max_size(channel)``
    rows (by id, so the first digest names the earliest executions); a group
    of one row, or a last chunk of one, is that row's own message.
    """
    grouped: dict[str, list[Delivery]] = {}
    out: list[Delivery | str] = []
    for delivery in deliveries:
        if delivery.group_key is None:
            out.append(delivery)
        elif delivery.group_key not in grouped:
            grouped[delivery.group_key] = [delivery]
            out.append(delivery.group_key)
        else:
            grouped[delivery.group_key].append(delivery)
    sent: list[Delivery] = []
    for item in out:
        if isinstance(item, Delivery):
            sent.append(item)
            continue
        rows = sorted(grouped[item], key=lambda d: d.id)
        size = max(1, max_size(rows[0].channel))
        for start in range(0, len(rows), size):
            sent.append(message_of(tuple(rows[start : start + size])))
    return sent


def _threads(delivery: Delivery) -> bool:
    """Whether ``delivery``'s channel threads an execution's messages (``ChannelSpec.threads``)."""
    spec = registry.get(delivery.channel)
    return spec is not None and spec.threads


def _shows_answers(delivery: Delivery) -> bool:
    """Whether ``delivery``'s channel shows what people did (``ChannelSpec.answers``)."""
    spec = registry.get(delivery.channel)
    return spec is not None and spec.answers


def message_of(rows: tuple[Delivery, ...]) -> Delivery:
    """The message carrying ``rows`` (in id order): the row itself, or their digest."""
    if len(rows) == 1:
        return rows[0]
    # The same rows make the same id: a digest sent again after a crash carries
    # the same email Message-ID and webhook delivery id, so the far side can drop it.
    keys = "\n".join(row.idempotency_key for row in rows)
    digest_id = f"{DIGEST_PREFIX}{uuid.uuid5(uuid.NAMESPACE_URL, keys)}"
    return replace(rows[0], digest=Digest(digest_id, rows))


def digest_list_url(settings: Settings) -> str:
    """Where a digest links to the list of what it carries, less its id; empty: no link."""
    public = settings.templates.public_url
    return f"{public.rstrip('/')}/api/v1/deliveries?message=" if public else ""


def with_list_link(delivery: Delivery, list_url: str) -> Delivery:
    """A digest with the link to the list of what it carries, when there is one."""
    digest = delivery.digest
    if digest is None or not list_url:
        return delivery
    link = list_url + urllib.parse.quote(digest.id, safe=":")
    return replace(delivery, digest=replace(digest, link=link))


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        settings: Settings,
        owner: str | None = None,
        observer: AttemptObserver | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.settings = settings
        self.owner = owner or new_owner_id()
        self._observer = observer
        self._wake = asyncio.Event()
        self._flights: set[_Flight] = set()
        self._busy: Counter[str] = Counter()
        self._completions: list[Completion] = []
        dispatch = settings.dispatch
        self._inflight = InflightLimiter(
            AimdRule(
                initial=dispatch.initial_per_destination,
                maximum=dispatch.max_per_destination,
                adaptive=dispatch.adaptive,
            )
        )
        self._caps = {name: self._cap(name) for name in [*self.channels, OTHER_CHANNELS]}
        self._stop = asyncio.Event()
        self._running = False
        self._claiming = False
        grouping = settings.grouping
        self._groups = {name: grouping.rule(name) for name in [*self.channels, INBOX]}
        self._list_url = digest_list_url(settings)

    # -- control -----------------------------------------------------------------

    def wake(self) -> None:
        """New work was enqueued: look for it now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set, then stop gracefully."""
        if self._running:
            # Two loops would share one set of slots and one stop event.
            raise RuntimeError("this dispatcher is already running")
        self._running = True
        self._stop = stop
        stopper = asyncio.create_task(self._wake_on(stop))
        renewer = asyncio.create_task(self._renew_leases())
        pruner = asyncio.create_task(self._prune_groups())
        pause = _STORE_RETRY_MIN
        try:
            while not stop.is_set():
                try:
                    if not await self._settle_and_claim():
                        await self._sleep()
                    pause = _STORE_RETRY_MIN
                except Exception as error:
                    # The database is away (restart, network) or full: keep the
                    # process and its in-flight sends, and try again with backoff.
                    # A full one says so itself, once (store/space.py).
                    if not isinstance(error, StoreFull):
                        log.exception("the ledger is unavailable; trying again in %.0f s", pause)
                    await asyncio.wait({stopper}, timeout=pause)
                    pause = min(pause * 2, _STORE_RETRY_MAX)
        finally:
            stopper.cancel()
            pruner.cancel()
            try:
                await self._shutdown()
            finally:
                # Only now: the sends finishing during shutdown keep their leases.
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                self._running = False

    async def run_until_idle(self, max_wait: float = 60.0, include_retries: bool = False) -> None:
        """Dispatch until nothing is due (or, with ``include_retries``, nothing is left).

        For scripts and tests. Raises ``TimeoutError`` if work remains after ``max_wait`` seconds.
        If the dispatcher is already running (``Notifier.start_dispatching``),
        waits for that loop instead of starting another.
        """
        stop = asyncio.Event()
        runner = None if self._running else asyncio.create_task(self.run(stop))
        deadline = time.monotonic() + max_wait
        try:
            while not await self._idle(include_retries):
                if runner is not None and runner.done():
                    runner.result()  # re-raise whatever stopped it
                if time.monotonic() > deadline:
                    raise TimeoutError(f"deliveries still pending after {max_wait} s")
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            if runner is not None:
                await runner

    async def _idle(self, include_retries: bool) -> bool:
        if self._working():
            return False
        due = await self.store.next_due_at()
        if self._working():
            return False  # a claim began while we looked: its rows look leased, not due
        if due is None:
            return True
        if include_retries or due <= time.time():
            return False
        # Rows held by an open group are due, only waiting for its window to close.
        return (await self.store.count_by_status())[DeliveryStatus.PENDING.value] == 0

    def _working(self) -> bool:
        # While a claim is under way its rows are leased but not yet in flight.
        return self._claiming or bool(self._flights) or bool(self._completions)

    # -- the loop -------------------------------------------------------------------

    def _cap(self, name: str) -> int:
        """The most sends of one channel in flight: the settings' and the channel's own bound."""
        dispatch = self.settings.dispatch
        cap = min(dispatch.per_channel.get(name, dispatch.max_in_flight), dispatch.max_in_flight)
        channel = self.channels.get(name)  # none for OTHER_CHANNELS
        own = channel.max_in_flight if channel is not None else None
        return cap if own is None else min(cap, own)

    def _limits(self) -> dict[str, int]:
        """How many rows of each channel to claim now.

        As many as its destinations have room for in flight (their adaptive
        limits), within the process's budget and one claim's size. A channel
        with sends in flight waits until a quarter of its room is free before
        claiming again: claiming one row per finished send cost a database
        round trip per delivery.
        """
        dispatch = self.settings.dispatch
        free = dispatch.max_in_flight - len(self._flights)
        limits: dict[str, int] = {}
        for name, cap in self._caps.items():
            capacity = self._inflight.capacity(name, cap) if cap else 0
            room = max(0, min(free, capacity - self._busy[name], dispatch.batch_size))
            worthwhile = max(1, min(capacity, dispatch.max_in_flight, dispatch.batch_size) // 4)
            limits[name] = room if room >= worthwhile or not self._busy[name] else 0
        return limits

    async def _settle_and_claim(self) -> bool:
        """Write the outcomes gathered so far and lease more work; True if there was either."""
        # Cleared before looking: a wake-up that arrives from here on means
        # something changed after this look. (Clearing only when claiming left
        # the event set while slots were scarce, and the loop spun.)
        self._wake.clear()
        limits = self._limits()
        completions, self._completions = self._completions, []
        if not completions and not any(limits.values()):
            return False
        self._claiming = True
        try:
            deliveries = await self.store.claim(
                self.owner,
                time.time(),
                self.settings.retry.lease,
                limits,
                completions,
                self._groups,
            )
            sent = [self._linked(d) for d in messages(deliveries, self._max_size)]
            prepared = {delivery.id: self._prepare(delivery) for delivery in sent}
            conversations = await self._join_conversations(prepared)
        except BaseException:
            # Not written: keep them for the next round (the rows stay leased).
            self._completions[:0] = completions
            raise
        finally:
            self._claiming = False
        for delivery in sent:
            key = channel_key(delivery.channel, limits)
            self._busy[key] += 1
            flight = _Flight(delivery, key, prepared[delivery.id], conversations.get(delivery.id))
            flight.task = asyncio.create_task(self._attempt(flight))
            self._flights.add(flight)
        # Not "the store was asked": with free slots and nothing due, that is
        # every round, and the loop would claim nothing as fast as it can.
        return bool(deliveries or completions)

    def _max_size(self, channel: str) -> int:
        return self._groups.get(channel, DEFAULT_GROUP_RULE).max_size

    def _linked(self, delivery: Delivery) -> Delivery:
        return with_list_link(delivery, self._list_url)

    async def _renew_leases(self) -> None:
        """Keep the leases of this process's unfinished rows from passing, until cancelled.

        Its rows are those in flight and those whose outcome is not written
        yet. A renewal that fails is logged and tried again at the next tick:
        the lease allows for a few missed ones.
        """
        while True:
            lease = self.settings.retry.lease
            await asyncio.sleep(lease / _RENEWALS_PER_LEASE)
            held = [m.id for f in self._flights for m in f.delivery.members]
            held += [c.delivery_id for c in self._completions]
            if not held:
                continue
            try:
                await self.store.renew_leases(self.owner, held, time.time(), lease)
            except Exception as error:
                log.warning("could not renew %d delivery leases: %r", len(held), error)

    async def _prune_groups(self) -> None:
        """Delete long-closed groups now and then, until cancelled: one row per
        group key ever seen would otherwise grow the ledger forever."""
        while True:
            try:
                pruned = await self.store.prune_groups(time.time() - _GROUP_KEEP_S)
            except Exception as error:
                log.warning("could not prune closed delivery groups: %r", error)
            else:
                if pruned:
                    log.info("pruned %d closed delivery groups", pruned)
            await asyncio.sleep(_PRUNE_EVERY_S)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _sleep(self) -> None:
        """Until woken (new work, a finished send, stop) or the next due time.

        Waits on the event directly: a task per sleep cost a tenth of the
        dispatcher's time, since every finished send wakes the loop.
        """
        if self._stop.is_set():
            return  # a stop that came while claiming (its wake-up was cleared)
        if self._flights:
            timeout = _IDLE_POLL  # a finishing send will wake us
        else:
            due = await self.store.next_due_at()
            timeout = _IDLE_POLL if due is None else min(_IDLE_POLL, due - time.time())
            # Never less than _RECHECK: whatever is due now, the look just made
            # did not claim (it became due since, or its channel has no slots
            # here), so look again soon rather than at once.
            timeout = max(timeout, _RECHECK)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    # -- one attempt ----------------------------------------------------------------

    async def _attempt(self, flight: _Flight) -> None:
        delivery = flight.delivery
        try:
            prepared = await self._ready(flight)
            opened: tuple[str, str] | None = None
            if isinstance(prepared, SendResult):
                result, started = prepared, time.time()
            else:
                result, started = await self._send_in_slot(flight, *prepared)
                opened = await self._note_first_message(prepared[1], result)
            members = delivery.members
            if self._observer is not None:
                for member in members:
                    self._observer(member, result, time.time() - started)
            # One retry time for the whole message: its rows come due again together.
            attempts = max(member.attempts for member in members) + 1
            retry_at = time.time() + backoff_delay(
                attempts,
                self.settings.retry.base_delay,
                self.settings.retry.max_delay,
                result.retry_after,
            )
            message = (flight.message_id, len(members))
            decided = [
                self._decide(member, result, started, retry_at, message) for member in members
            ]
            if opened is not None:  # written with the outcome: one round trip, not two
                decided[0] = replace(decided[0], opened=opened[0], thread=opened[1])
            self._completions += decided
            if decided[0].status is DeliveryStatus.DEAD:  # one outcome for the whole message
                _log_dead(delivery, decided[0].reply)
        finally:
            self._busy[flight.key] -= 1
            self._flights.discard(flight)
            self._wake.set()  # an outcome to write, a slot to fill

    async def _send_in_slot(
        self, flight: _Flight, channel: Channel, delivery: Delivery
    ) -> tuple[SendResult, float]:
        """Send once a slot at the destination is free; what it answered adapts the slots."""
        # Keyed by the configured name (the dev inbox stands in for several channels).
        name = delivery.channel
        ticket = await self._inflight.acquire(name, channel.destination(delivery), self._caps[name])
        started = time.time()
        # A guard above the channels' own timeouts, against a channel that
        # hangs. A timer handle, not asyncio.timeout: that context manager
        # was a twentieth of the dispatcher's CPU. Armed once the slot is
        # ours: waiting for one is not the channel hanging.
        guard = asyncio.get_running_loop().call_later(_ATTEMPT_TIMEOUT, _abandon, flight)
        result: SendResult | None = None
        try:
            try:
                result = await self._send(channel, delivery)
            except asyncio.CancelledError:
                if not flight.overdue:
                    raise  # shutting down
                result = SendResult.transient("the attempt took too long and was abandoned")
            # A channel that stamped its message with a time reports it: the attempt
            # starts then, so the ledger has the time the message carries.
            return result, started if result.sent_at is None else result.sent_at
        finally:
            guard.cancel()
            self._inflight.release(ticket, signal_of(result))

    async def _ready(self, flight: _Flight) -> tuple[Channel, Delivery] | SendResult:
        """The channel and the delivery as it is to be sent (routed, in its
        conversation), or why it is not sent now."""
        if isinstance(flight.prepared, SendResult):
            return flight.prepared
        channel, routed = flight.prepared
        joined = await self._join_conversation(routed, flight.conversation)
        return joined if isinstance(joined, SendResult) else (channel, joined)

    # -- conversations -----------------------------------------------------------

    def _converses(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` (routed) is part of its execution's conversation with
        its destination: a single message over a channel that threads them."""
        return delivery.digest is None and _threads(delivery)

    async def _join_conversations(
        self, prepared: Mapping[int, tuple[Channel, Delivery] | SendResult]
    ) -> dict[int, Conversation]:
        """By delivery id, the conversations of a claim's single messages (as routed:
        ``prepared``) joined together: two statements for the claim, not two per
        message. The earliest of a claim's messages of one conversation is offered
        as its first; a message missing here joins on its own (_join_conversation)."""
        keys = {
            delivery_id: ready[1].conversation
            for delivery_id, ready in prepared.items()
            if not isinstance(ready, SendResult) and self._converses(ready[1])
        }
        first: dict[str, int] = {}
        for delivery_id, key in keys.items():
            first[key] = min(first.get(key, delivery_id), delivery_id)
        if not first:
            return {}
        try:
            joined = await self.store.join_conversations(sorted(first.items()))
        except Exception as error:
            log.warning("could not join %d conversations at once: %r", len(first), error)
            return {}
        return {i: joined[key] for i, key in keys.items() if key in joined}

    async def _join_conversation(
        self, delivery: Delivery, conversation: Conversation | None
    ) -> Delivery | SendResult:
        """``delivery`` as its conversation has it sent: as the first message, or
        with the ``thread`` it updates or follows; or, while another delivery is
        sending the first message, the wait for it."""
        if not self._converses(delivery):
            return delivery
        key = delivery.conversation
        try:
            if conversation is None:
                conversation = await self.store.join_conversation(key, delivery.id)
            if conversation.root_delivery == delivery.id:
                return delivery
            if conversation.thread is None:
                # Sent once the first message is (or taken over if its send
                # fails): two messages at once would both be first.
                return SendResult.transient(
                    f"waiting for delivery {conversation.root_delivery} to send the first"
                    " message of this conversation",
                    retry_after=_FIRST_MESSAGE_WAIT,
                )
            root = await self.store.get_delivery(conversation.root_delivery)
            digest = await self._digest_now(root, delivery) if root is not None else None
            shows = digest is None and _shows_answers(delivery)
            answers = await self._answers(root) if shows else ()
        except Exception as error:
            log.warning("could not read conversation %s: %r", key, error)
            return SendResult.transient(
                f"the ledger could not say what this message follows: {error!r}"
            )
        return replace(delivery, thread=Thread(conversation.thread, root, digest, answers))

    async def _answers(self, root: Delivery | None) -> tuple[Answer, ...]:
        """What people did from the messages about ``root``'s execution: rewriting its
        message must not take their names off it."""
        if root is None:
            return ()
        eid = root.execution_id
        answers = [Answer.of(ack) for ack in await self.store.list_acknowledgements(eid)]
        actions = await self.store.list_actions(eid)
        answers += [Answer.of(a) for a in actions if a.outcome is ActionOutcome.DONE]
        return tuple(sorted(answers, key=lambda answer: answer.at))

    async def _digest_now(self, root: Delivery, delivery: Delivery) -> Digest | None:
        """The digest ``root`` was sent in, if it was, with each execution it names
        in its latest state sent to this destination, ``delivery``'s as it is now:
        what the digest's message is updated to. Two statements however many
        executions it names: a storm's digest is updated for each later message
        about any of them."""
        if not root.message_id.startswith(DIGEST_PREFIX):
            return None
        carried = await self.store.list_deliveries(
            DeliveryFilter(message=root.message_id, limit=DIGEST_MOST)
        )
        sent = {
            (row.execution_id, row.channel, row.recipient): row
            for row in await self.store.latest_of_message(root.message_id)
        }

        def latest(row: Delivery) -> Delivery:
            if row.execution_id == delivery.execution_id:
                return delivery
            return sent.get((row.execution_id, row.channel, row.recipient), row)

        digest = Digest(root.message_id, tuple(latest(row) for row in carried))
        return with_list_link(replace(root, digest=digest), self._list_url).digest

    async def _note_first_message(
        self, delivery: Delivery, result: SendResult
    ) -> tuple[str, str] | None:
        """The conversation whose first message ``delivery`` sent and that message's
        id, what later ones follow: recorded with its outcome.

        A delivery that was handed a thread and went out without following it
        sent a new first message (the old one was deleted): it is recorded too.
        A digest is the first message of each execution it names that had none
        with its destination (recorded here: later messages about one of them
        follow it).
        """
        if result.outcome is not Outcome.DELIVERED or not _threads(delivery):
            return None
        if delivery.thread is not None and result.in_reply_to:
            return None
        thread = result.provider_message_id or f"single:{delivery.idempotency_key}"
        if delivery.digest is None:
            return delivery.conversation, thread
        try:
            await self._open_conversations(delivery.digest, thread)
        except Exception as error:
            # Its delivery is delivered with no id recorded: the conversation's next
            # message takes it over and starts a new one.
            log.warning(
                "could not record the first message of %s: %r", delivery.conversation, error
            )
        return None

    async def _open_conversations(self, digest: Digest, thread: str) -> None:
        """Make the digest sent as ``thread`` the first message of the conversation of
        each row's execution with its destination that has none yet."""
        for row in digest.deliveries:
            if row.is_recovery:
                continue  # a recovery goes where its failure went: it opens nothing
            conversation = await self.store.join_conversation(row.conversation, row.id)
            if conversation.root_delivery == row.id:
                await self.store.conversation_sent(row.conversation, row.id, thread)

    def _prepare(self, delivery: Delivery) -> tuple[Channel, Delivery] | SendResult:
        """The channel and the (routed) delivery to send, or why it cannot be sent."""
        if delivery.message.problem:
            return SendResult.permanent(delivery.message.problem)
        if delivery.channel == UNROUTABLE:
            # Routed again at each attempt: once configuration can reach the
            # recipient, a re-driven dead letter goes out.
            try:
                where = route(delivery.kind, delivery.recipient, self.settings)
            except RoutingError as error:
                return SendResult.permanent(f"cannot route: {error}")
            delivery = replace(delivery, channel=where.channel, recipient=where.recipient)
        # Checked at every attempt: a re-drive after [allow] was narrowed sends nothing.
        refused = _refused(delivery, self.settings)
        if refused is not None:
            return SendResult.permanent(f"cannot route: {refused}")
        channel = self.channels.get(delivery.channel)
        if channel is None:
            return SendResult.permanent(
                f"no {delivery.channel!r} channel is configured in this flytenotify"
            )
        return channel, delivery

    async def _send(self, channel: Channel, delivery: Delivery) -> SendResult:
        try:
            return await channel.send(delivery)
        except Exception as error:  # a bug in a channel must not lose the delivery
            log.exception("channel %s failed on delivery %s", delivery.channel, delivery.id)
            return SendResult.transient(
                f"internal error in the {delivery.channel} channel: {error!r}"
            )

    def _decide(
        self,
        delivery: Delivery,
        result: SendResult,
        started: float,
        retry_at: float,
        message: tuple[str, int],
    ) -> Completion:
        """The row's status after this attempt; ``retry_at`` if it is to be tried again."""
        now = time.time()
        retry = self.settings.retry
        attempts = delivery.attempts + 1
        status, next_at = DeliveryStatus.DEAD, None
        reply = result.reply
        if result.outcome is Outcome.DELIVERED:
            status = DeliveryStatus.DELIVERED
        elif result.outcome is Outcome.TRANSIENT:
            age = now - delivery.created_at.timestamp()
            if attempts >= retry.max_attempts:
                reply += f" (gave up after {attempts} attempts)"
            elif age >= retry.max_age:
                reply += f" (gave up: older than {retry.max_age:g} s)"
            else:
                status = DeliveryStatus.RETRYING
                next_at = retry_at
        return Completion(
            delivery_id=delivery.id,
            lease_owner=self.owner,
            started_at=started,
            finished_at=now,
            outcome=result.outcome.value,
            reply=reply,
            status=status,
            next_attempt_at=next_at,
            message_id=message[0],
            message_size=message[1],
            provider_message_id=result.provider_message_id,
            in_reply_to=result.in_reply_to,
        )

    async def _flush(self) -> None:
        """Write the outcomes still held (at shutdown; the loop writes them with its claims)."""
        if not self._completions:
            return
        batch, self._completions = self._completions, []
        try:
            await self.store.complete(batch)
        except Exception:
            # The rows stay leased; when the lease passes they are sent again.
            log.exception("could not record %d delivery outcomes", len(batch))

    async def _shutdown(self) -> None:
        tasks = {flight.task for flight in self._flights if flight.task is not None}
        if tasks:
            _done, pending = await asyncio.wait(
                tasks, timeout=self.settings.dispatch.shutdown_grace
            )
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._flush()
        try:
            released = await self.store.release(self.owner)
        except Exception:
            log.exception("could not release leases; they expire by themselves")
            return
        if released:
            log.info("released %d unfinished deliveries for the next run", released)


def _log_dead(delivery: Delivery, reply: str) -> None:
    """Say once, when it happens, that a message will not be sent again (a re-drive may)."""
    digest = delivery.digest
    if digest is None:
        what = f"delivery {delivery.id} ({delivery.execution_id} {phase_name(delivery.phase)})"
    else:
        ids = ", ".join(str(member.id) for member in digest.deliveries[:10])
        more = ", ..." if len(digest.deliveries) > 10 else ""
        what = f"digest {digest.id} of {len(digest.deliveries)} deliveries ({ids}{more})"
    log.warning(
        "%s to %s via %s is dead (re-drive it with flytenotify deliveries retry): %s",
        what,
        delivery.recipient,
        delivery.channel,
        reply,
    )


def _abandon(flight: _Flight) -> None:
    if flight.task is not None and not flight.task.done():
        flight.overdue = True
        flight.task.cancel()
