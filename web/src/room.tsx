// The open channel: its header, a windowed list of messages (at most a few
// hundred in the page however long the channel is; older pages come in as
// you scroll up), the composer, typing and presence, and the members and
// settings panels.

import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { api, errorText, failure, newClientMessageId } from "./api";
import { type Channel, ChannelSchema, type Member, type Message } from "./gen/atomchat/v1/resources_pb";
import { longTime, shortTime, t } from "./i18n";
import { RoomModel } from "./room-model";
import { canManage, endedSession, getState, isOwner, loadMyChannels, rememberUser, update, useStore } from "./store";

/** Messages in the page at most, and how many more come in per step. */
const MAX_RENDERED = 240;
const FIRST_RENDERED = 80;
const STEP = 60;
const NEAR_EDGE_PX = 400;
const EMOJI = ["👍", "❤️", "😂", "🎉", "👀", "🙏"];
const MENTION = /(@[\p{L}\p{N}_.-]+)/u;

function scrollKey(channelId: bigint): string {
  return `atomchat.scroll.${channelId}`;
}

type Anchor = { seq: string; delta: number };
type SavedScroll = "bottom" | Anchor;

function readScroll(channelId: bigint): SavedScroll {
  const stored = sessionStorage.getItem(scrollKey(channelId));
  return stored ? (JSON.parse(stored) as SavedScroll) : "bottom";
}

function useModel(model: RoomModel): void {
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  useEffect(() => model.subscribe(() => rerender(0)), [model]);
}

function lowerBound(messages: Message[], seq: bigint): number {
  let low = 0;
  let high = messages.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (messages[middle].seq < seq) low = middle + 1;
    else high = middle;
  }
  return low;
}

export function Room({ channelId }: { channelId: bigint }) {
  const store = useStore();
  const model = useMemo(() => {
    const known = store.myChannels.find((channel) => channel.id === channelId);
    return new RoomModel(known ?? create(ChannelSchema, { id: channelId }));
  }, [channelId]);
  useEffect(() => {
    void model.follow();
    return () => model.close();
  }, [model]);
  useModel(model);
  const [panel, setPanel] = useState<"members" | "settings" | null>(null);
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const known = store.myChannels.find((channel) => channel.id === channelId);
  const channel = model.channel.name ? model.channel : (known ?? model.channel);
  const status = model.status;
  const statusText =
    status.kind === "live"
      ? t("live")
      : status.kind === "connecting"
        ? t("connecting")
        : status.kind === "reconnecting"
          ? t("reconnecting")
          : t("channelClosed", { reason: status.reason });
  useEffect(() => {
    document.title = channel.name ? `${channel.name} · ${t("appName")}` : t("appName");
  }, [channel.name]);

  return (
    <section class="room" aria-labelledby="room-title">
      <header class="room-header">
        <div class="room-heading">
          <h2 id="room-title">{channel.name}</h2>
          <span
            id="room-status"
            role="status"
            class={`status ${status.kind === "live" ? "" : "problem"}`}
            data-state={status.kind}
          >
            {statusText}
          </span>
          <span class="online-count">{t("onlineCount", { n: model.online.size })}</span>
        </div>
        {channel.description && <p class="room-description">{channel.description}</p>}
        <div class="room-tools">
          <button
            type="button"
            aria-expanded={panel === "members"}
            aria-controls="side-panel"
            onClick={() => setPanel(panel === "members" ? null : "members")}
          >
            {t("members")}
          </button>
          {channel.ownerId > 0n && canManage(channel) && (
            <button
              type="button"
              aria-expanded={panel === "settings"}
              aria-controls="side-panel"
              onClick={() => setPanel(panel === "settings" ? null : "settings")}
            >
              {t("settings")}
            </button>
          )}
        </div>
      </header>
      <div class="room-body">
        <div class="room-main">
          <MessageList model={model} onReply={setReplyTo} />
          <TypingLine model={model} />
          <Composer model={model} replyTo={replyTo} onReplyDone={() => setReplyTo(null)} />
        </div>
        {panel && (
          <aside id="side-panel" class="side-panel" aria-label={t(panel)}>
            <button type="button" class="close" onClick={() => setPanel(null)}>
              {t("close")}
            </button>
            {panel === "members" ? (
              <MembersPanel channel={channel} model={model} />
            ) : (
              <SettingsPanel channel={channel} />
            )}
          </aside>
        )}
      </div>
    </section>
  );
}

function MessageList({ model, onReply }: { model: RoomModel; onReply: (message: Message) => void }) {
  const list = useRef<HTMLOListElement>(null);
  const [top, setTop] = useState<bigint | null>(null);
  const [bottom, setBottom] = useState<bigint | null>(null);
  const [editing, setEditing] = useState<bigint | null>(null);
  const anchor = useRef<Anchor | null>(null);
  const stick = useRef(true);
  const restored = useRef(false);
  const marked = useRef(0n);
  const markTimer = useRef<number | undefined>(undefined);
  const messages = model.messages;

  let start = top === null ? Math.max(0, messages.length - FIRST_RENDERED) : lowerBound(messages, top);
  const end = bottom === null ? messages.length : lowerBound(messages, bottom + 1n);
  if (bottom === null && end - start > MAX_RENDERED) start = end - MAX_RENDERED;
  const shown = messages.slice(start, end);

  function findAnchor(): Anchor | null {
    const element = list.current;
    if (!element) return null;
    for (const child of element.children) {
      const item = child as HTMLElement;
      if (item.dataset.seq && item.offsetTop + item.offsetHeight > element.scrollTop) {
        return { seq: item.dataset.seq, delta: item.offsetTop - element.scrollTop };
      }
    }
    return null;
  }

  function atBottom(): boolean {
    const element = list.current;
    return !!element && element.scrollHeight - element.scrollTop - element.clientHeight < 40;
  }

  function markRead(): void {
    const seq = model.lastSeq;
    if (
      seq === undefined ||
      seq <= marked.current ||
      bottom !== null ||
      !stick.current ||
      model.status.kind !== "live" ||
      document.visibilityState !== "visible"
    ) {
      return;
    }
    if (markTimer.current !== undefined) return;
    markTimer.current = window.setTimeout(async () => {
      markTimer.current = undefined;
      marked.current = seq;
      try {
        const readState = await api.channels.markRead({ channelId: model.id, seq });
        const { myChannels } = getState();
        update({
          myChannels: myChannels.map((channel) =>
            channel.id === model.id ? { ...channel, readState } : channel,
          ),
        });
      } catch (error) {
        endedSession(error);
      }
    }, 300);
  }

  async function extendUp(): Promise<void> {
    if (start === 0) {
      if (model.complete) return;
      anchor.current = findAnchor();
      await model.loadOlder();
    }
    const all = model.messages;
    const first = start === 0 ? Math.max(0, lowerBound(all, shown[0]?.seq ?? 0n) - STEP) : Math.max(0, start - STEP);
    if (!all.length) return;
    anchor.current = findAnchor();
    stick.current = false;
    setTop(all[first].seq);
    const last = Math.min(all.length, first + MAX_RENDERED);
    if (last < all.length && lowerBound(all, (shown[shown.length - 1]?.seq ?? 0n) + 1n) > last) {
      setBottom(all[last - 1].seq);
    }
  }

  function extendDown(): void {
    if (bottom === null) return;
    const all = model.messages;
    const last = Math.min(all.length, end + STEP);
    anchor.current = findAnchor();
    if (last >= all.length) {
      setBottom(null);
    } else {
      setBottom(all[last - 1].seq);
    }
    if (last - start > MAX_RENDERED) setTop(all[last - MAX_RENDERED].seq);
  }

  function jumpToLatest(): void {
    stick.current = true;
    setTop(null);
    setBottom(null);
  }

  function onScroll(): void {
    const element = list.current;
    if (!element) return;
    stick.current = bottom === null && atBottom();
    anchor.current = stick.current ? null : findAnchor();
    sessionStorage.setItem(
      scrollKey(model.id),
      JSON.stringify(stick.current || !anchor.current ? "bottom" : anchor.current),
    );
    if (element.scrollTop < NEAR_EDGE_PX) void extendUp();
    else if (element.scrollHeight - element.scrollTop - element.clientHeight < NEAR_EDGE_PX) extendDown();
    markRead();
  }

  // Where the page was before a reload: load back to that message, show it where it was.
  useEffect(() => {
    if (restored.current || model.status.kind !== "live") return;
    restored.current = true;
    const saved = readScroll(model.id);
    if (saved === "bottom") return;
    const seq = BigInt(saved.seq);
    void model.reach(seq).then(() => {
      const all = model.messages;
      const index = lowerBound(all, seq);
      if (index >= all.length) return;
      stick.current = false;
      anchor.current = saved;
      setTop(all[Math.max(0, index - 20)].seq);
      const last = index + MAX_RENDERED - 40;
      setBottom(last < all.length ? all[last].seq : null);
    });
  }, [model.status.kind]);

  useLayoutEffect(() => {
    const element = list.current;
    if (!element) return;
    if (stick.current) {
      element.scrollTop = element.scrollHeight;
    } else if (anchor.current) {
      const item = element.querySelector<HTMLElement>(`[data-seq="${anchor.current.seq}"]`);
      if (item) element.scrollTop = item.offsetTop - anchor.current.delta;
    }
    markRead();
  });

  const latestMarkRead = useRef(markRead);
  latestMarkRead.current = markRead;
  useEffect(() => {
    const visible = () => latestMarkRead.current();
    document.addEventListener("visibilitychange", visible);
    return () => {
      document.removeEventListener("visibilitychange", visible);
      clearTimeout(markTimer.current);
    };
  }, []);

  const manage = canManage(model.channel);
  return (
    <div class="message-area">
      {start === 0 && !model.complete && model.status.kind !== "connecting" && (
        <button type="button" class="older" onClick={() => void extendUp()}>
          {t("older")}
        </button>
      )}
      <ol
        id="messages"
        class="messages"
        ref={list}
        aria-label={t("messages")}
        tabIndex={0}
        onScroll={onScroll}
      >
        {shown.map((message) => (
          <MessageItem
            key={message.id.toString()}
            message={message}
            model={model}
            manage={manage}
            editing={editing === message.id}
            onEdit={(on) => setEditing(on ? message.id : null)}
            onReply={onReply}
          />
        ))}
      </ol>
      {model.status.kind === "live" && messages.length === 0 && <p class="empty">{t("noMessages")}</p>}
      {bottom !== null && (
        <button type="button" class="latest" onClick={jumpToLatest}>
          {t("latest")}
        </button>
      )}
    </div>
  );
}

function Content({ text }: { text: string }) {
  return (
    <>
      {text.split(MENTION).map((part, index) =>
        index % 2 === 1 ? (
          <span class="mention" key={index}>
            {part}
          </span>
        ) : (
          part
        ),
      )}
    </>
  );
}

interface ItemProps {
  message: Message;
  model: RoomModel;
  manage: boolean;
  editing: boolean;
  onEdit: (on: boolean) => void;
  onReply: (message: Message) => void;
}

function MessageItem({ message, model, manage, editing, onEdit, onReply }: ItemProps) {
  const me = getState().session;
  const mine = me !== null && message.senderId.toString() === me.userId;
  const mentionsMe = me !== null && message.mentionUserIds.some((id) => id.toString() === me.userId);
  const [reacting, setReacting] = useState(false);
  const [problem, setProblem] = useState("");
  const created = message.createdAt ? timestampDate(message.createdAt) : null;
  const replied = message.replyToId > 0n ? model.message(message.replyToId) : undefined;

  async function act(call: () => Promise<Message>): Promise<void> {
    setProblem("");
    try {
      model.put(await call());
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  function toggle(emoji: string, mineAlready: boolean): void {
    setReacting(false);
    const request = { channelId: message.channelId, messageId: message.id, emoji };
    void act(() => (mineAlready ? api.chat.removeReaction(request) : api.chat.addReaction(request)));
  }

  function remove(): void {
    if (window.confirm(t("confirmDeleteMessage"))) {
      void act(() => api.chat.deleteMessage({ channelId: message.channelId, messageId: message.id }));
    }
  }

  const classes = ["message", mine ? "mine" : "", mentionsMe ? "mentions-me" : "", message.deleted ? "deleted" : ""];
  return (
    <li class={classes.filter(Boolean).join(" ")} data-seq={message.seq.toString()} data-id={message.id.toString()}>
      {message.replyToId > 0n && (
        <p class="reply-quote">
          {replied
            ? t("replyTo", {
                name: replied.senderUsername,
                text: replied.deleted ? t("deleted") : replied.content.slice(0, 80),
              })
            : t("replyToUnknown")}
        </p>
      )}
      <span class="sender">{message.senderUsername}</span>
      {created && (
        <time dateTime={created.toISOString()} title={longTime(created)}>
          {shortTime(created)}
        </time>
      )}
      {message.editedAt && !message.deleted && <span class="edited">({t("edited")})</span>}
      {editing ? (
        <EditForm message={message} model={model} onDone={() => onEdit(false)} />
      ) : (
        <p class="content">{message.deleted ? <em>{t("deleted")}</em> : <Content text={message.content} />}</p>
      )}
      {message.reactions.length > 0 && (
        <ul class="reactions" aria-label={t("react")}>
          {message.reactions.map((reaction) => (
            <li key={reaction.emoji}>
              <button
                type="button"
                aria-pressed={reaction.me}
                aria-label={t(reaction.me ? "reactionMine" : "reaction", { emoji: reaction.emoji, n: reaction.count })}
                onClick={() => toggle(reaction.emoji, reaction.me)}
              >
                {reaction.emoji} {reaction.count}
              </button>
            </li>
          ))}
        </ul>
      )}
      {!message.deleted && !editing && (
        <div class="actions">
          <button type="button" onClick={() => onReply(message)}>
            {t("reply")}
          </button>
          <button type="button" aria-expanded={reacting} onClick={() => setReacting(!reacting)}>
            {t("react")}
          </button>
          {mine && (
            <button type="button" onClick={() => onEdit(true)}>
              {t("edit")}
            </button>
          )}
          {(mine || manage) && (
            <button type="button" onClick={remove}>
              {t("deleteMessage")}
            </button>
          )}
        </div>
      )}
      {reacting && (
        <div
          class="emoji-picker"
          role="group"
          aria-label={t("react")}
          onKeyDown={(event) => event.key === "Escape" && setReacting(false)}
        >
          {EMOJI.map((emoji) => (
            <button
              type="button"
              key={emoji}
              aria-label={t("reactWith", { emoji })}
              onClick={() => toggle(emoji, message.reactions.some((r) => r.emoji === emoji && r.me))}
            >
              {emoji}
            </button>
          ))}
        </div>
      )}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
    </li>
  );
}

function EditForm({ message, model, onDone }: { message: Message; model: RoomModel; onDone: () => void }) {
  const [text, setText] = useState(message.content);
  const [problem, setProblem] = useState("");
  const field = useRef<HTMLTextAreaElement>(null);
  useEffect(() => field.current?.focus(), []);

  async function save(): Promise<void> {
    try {
      model.put(await api.chat.editMessage({ channelId: message.channelId, messageId: message.id, content: text }));
      onDone();
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  return (
    <form
      class="edit-form"
      onSubmit={(event) => {
        event.preventDefault();
        void save();
      }}
    >
      <textarea
        ref={field}
        aria-label={t("editMessage")}
        value={text}
        rows={2}
        maxLength={4000}
        onInput={(event) => setText(event.currentTarget.value)}
        onKeyDown={(event) => {
          if (event.key === "Escape") {
            event.preventDefault();
            onDone();
          } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
            event.preventDefault();
            void save();
          }
        }}
      />
      <button type="submit">{t("save")}</button>
      <button type="button" onClick={onDone}>
        {t("cancel")}
      </button>
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
    </form>
  );
}

function TypingLine({ model }: { model: RoomModel }) {
  const names = [...model.typing.values()].map((typist) => typist.username);
  return (
    <p class="typing" aria-live="polite">
      {names.length === 0 ? "" : t(names.length === 1 ? "typing" : "typingMany", { names: names.join(", ") })}
    </p>
  );
}

/** The message being sent, so that sending it again after a failure reuses its id. */
interface Draft {
  content: string;
  clientMessageId: string;
}

function Composer({ model, replyTo, onReplyDone }: { model: RoomModel; replyTo: Message | null; onReplyDone: () => void }) {
  const [text, setText] = useState("");
  const [problem, setProblem] = useState("");
  const [sending, setSending] = useState(false);
  const draft = useRef<Draft | null>(null);
  const field = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (replyTo) field.current?.focus();
  }, [replyTo]);
  if (model.status.kind === "closed") {
    return (
      <p class="error" role="alert">
        {t("channelClosed", { reason: model.status.reason })}
      </p>
    );
  }

  async function send(): Promise<void> {
    if (sending || !text.trim()) return;
    if (draft.current?.content !== text) draft.current = { content: text, clientMessageId: newClientMessageId() };
    setProblem("");
    setSending(true);
    try {
      await api.chat.sendMessage({
        channelId: model.id,
        content: text,
        clientMessageId: draft.current.clientMessageId,
        replyToId: replyTo?.id ?? 0n,
      });
      setText("");
      draft.current = null;
      onReplyDone();
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    } finally {
      setSending(false);
      field.current?.focus();
    }
  }

  return (
    <form
      id="composer"
      class="composer"
      onSubmit={(event) => {
        event.preventDefault();
        void send();
      }}
    >
      {replyTo && (
        <p class="replying">
          {t("replyingTo", { name: replyTo.senderUsername })}
          <button type="button" onClick={onReplyDone}>
            {t("cancelReply")}
          </button>
        </p>
      )}
      <div class="composer-row">
        <textarea
          id="content"
          ref={field}
          rows={2}
          maxLength={4000}
          placeholder={t("writeMessage")}
          aria-label={t("newMessage")}
          value={text}
          onInput={(event) => {
            setText(event.currentTarget.value);
            model.typed();
          }}
          onKeyDown={(event) => {
            if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
              event.preventDefault();
              void send();
            } else if (event.key === "Escape" && replyTo) {
              event.preventDefault();
              onReplyDone();
            }
          }}
        />
        <button id="send" type="submit" disabled={sending}>
          {t("send")}
        </button>
      </div>
      <p id="composer-error" class="error" role="alert">
        {problem}
      </p>
    </form>
  );
}

function MembersPanel({ channel, model }: { channel: Channel; model: RoomModel }) {
  const store = useStore();
  const [members, setMembers] = useState<Member[]>([]);
  const [problem, setProblem] = useState("");
  const [who, setWho] = useState("");
  const manage = channel.ownerId > 0n && canManage(channel);
  const me = store.session;

  async function load(): Promise<void> {
    try {
      const page = await api.members.listMembers({ channelId: channel.id, pageSize: 200 });
      for (const member of page.members) rememberUser(member.userId, member.username);
      setMembers(page.members);
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }
  useEffect(() => void load(), [channel.id]);

  async function run(call: () => Promise<unknown>): Promise<void> {
    setProblem("");
    try {
      await call();
      await load();
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  async function add(): Promise<void> {
    const name = who.trim();
    setProblem("");
    try {
      const user = await api.users.lookupUser({ username: name });
      await api.members.addMember({ channelId: channel.id, userId: user.id });
      setWho("");
      await load();
    } catch (error) {
      if (endedSession(error)) return;
      setProblem(failure(error).code === Code.NotFound ? t("noSuchUser", { name }) : errorText(error));
    }
  }

  function leave(): void {
    if (window.confirm(t("confirmLeave", { name: channel.name }))) {
      void run(async () => {
        await api.members.leaveChannel({ channelId: channel.id });
        await loadMyChannels();
        window.location.hash = "#/browse";
      });
    }
  }

  const amMember = me !== null && members.some((member) => member.userId.toString() === me.userId);
  return (
    <div class="members">
      <h3>{t("members")}</h3>
      <ul class="member-list" aria-label={t("members")}>
        {members.map((member) => {
          const online = model.online.has(member.userId.toString());
          return (
            <li key={member.userId.toString()}>
              <span class={`dot ${online ? "on" : ""}`} aria-hidden="true" />
              <span class="member-name">{member.username}</span>
              {online && <span class="visually-hidden">, {t("online")}</span>}
              {member.isOwner && <span class="badge">{t("owner")}</span>}
              {manage && !member.isOwner && (
                <button
                  type="button"
                  aria-label={`${t("remove")} ${member.username}`}
                  onClick={() => void run(() => api.members.removeMember({ channelId: channel.id, userId: member.userId }))}
                >
                  {t("remove")}
                </button>
              )}
            </li>
          );
        })}
      </ul>
      {manage && (
        <form
          class="add-member"
          onSubmit={(event) => {
            event.preventDefault();
            void add();
          }}
        >
          <label>
            {t("addMember")}
            <input
              value={who}
              list="known-users"
              placeholder={t("username")}
              maxLength={32}
              onInput={(event) => setWho(event.currentTarget.value)}
              required
            />
          </label>
          <datalist id="known-users">
            {[...store.users.values()].map((username) => (
              <option key={username} value={username} />
            ))}
          </datalist>
          <button type="submit">{t("add")}</button>
        </form>
      )}
      {amMember && !isOwner(channel) && (
        <button type="button" class="danger" onClick={leave}>
          {t("leave")}
        </button>
      )}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
    </div>
  );
}

function SettingsPanel({ channel }: { channel: Channel }) {
  const [name, setName] = useState(channel.name);
  const [description, setDescription] = useState(channel.description);
  const [problem, setProblem] = useState("");
  const [done, setDone] = useState("");

  async function save(): Promise<void> {
    setProblem("");
    setDone("");
    try {
      await api.channels.updateChannel({
        channelId: channel.id,
        name,
        description,
        updateMask: { paths: ["name", "description"] },
      });
      setDone(t("saved"));
      await loadMyChannels();
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  async function remove(): Promise<void> {
    if (!window.confirm(t("confirmDeleteChannel", { name: channel.name }))) return;
    try {
      await api.channels.deleteChannel({ channelId: channel.id });
      await loadMyChannels();
      window.location.hash = "#/browse";
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  return (
    <div class="settings">
      <h3>{t("settings")}</h3>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          void save();
        }}
      >
        <label>
          {t("name")}
          <input value={name} maxLength={100} required onInput={(event) => setName(event.currentTarget.value)} />
        </label>
        <label>
          {t("description")}
          <textarea
            value={description}
            maxLength={1000}
            rows={3}
            onInput={(event) => setDescription(event.currentTarget.value)}
          />
        </label>
        <button type="submit">{t("save")}</button>
        <span role="status">{done}</span>
      </form>
      <button type="button" class="danger" onClick={() => void remove()}>
        {t("deleteChannel")}
      </button>
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
    </div>
  );
}
