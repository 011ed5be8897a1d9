// AtomChat in the browser: grpc-web through Envoy, at the page's own origin.
// The shell (log in or register, my channels with unread counts, the inbox
// stream's state) and every screen but the open channel, which is room.tsx.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { allPages, api, errorText, failure } from "./api";
import { MembershipChange, type InboxEvent } from "./gen/atomchat/v1/inbox_pb";
import type { SearchResult } from "./gen/atomchat/v1/chat_pb";
import { type Channel, JoinRequestStatus, Role, type User } from "./gen/atomchat/v1/resources_pb";
import { language, shortTime, t } from "./i18n";
import { Room } from "./room";
import {
  endedSession,
  getState,
  loadMyRequests,
  logIn,
  logOut,
  rememberRequest,
  rememberUser,
  settle,
  start,
  type State,
  update,
  useStore,
} from "./store";

type Route =
  | { page: "home" }
  | { page: "channel"; id: bigint }
  | { page: "browse" }
  | { page: "new" }
  | { page: "inbox" }
  | { page: "moderation" }
  | { page: "search"; query: string };

function parseRoute(hash: string): Route {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const channel = /^\/c\/(\d+)$/.exec(path);
  if (channel) return { page: "channel", id: BigInt(channel[1]) };
  switch (path) {
    case "/browse":
      return { page: "browse" };
    case "/new":
      return { page: "new" };
    case "/inbox":
      return { page: "inbox" };
    case "/moderation":
      return { page: "moderation" };
    case "/search":
      return { page: "search", query: new URLSearchParams(query).get("q") ?? "" };
    default:
      return { page: "home" };
  }
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

function ErrorLine({ text, id }: { text: string; id?: string }) {
  return (
    <p id={id} class="error" role="alert">
      {text}
    </p>
  );
}

function Login() {
  const store = useStore();
  const [registering, setRegistering] = useState(false);
  const [problem, setProblem] = useState(store.loginMessage);
  const [busy, setBusy] = useState(false);
  useEffect(() => setProblem(store.loginMessage), [store.loginMessage]);

  async function submit(form: HTMLFormElement): Promise<void> {
    const data = new FormData(form);
    const username = String(data.get("username"));
    const password = String(data.get("password"));
    setProblem("");
    setBusy(true);
    try {
      if (registering) await api.users.register({ username, password });
      const response = await api.users.login({ username, password });
      const user = response.user;
      logIn({
        token: response.accessToken,
        userId: user?.id.toString() ?? "",
        username: user?.username ?? username,
        moderator: user?.role === Role.MODERATOR,
      });
    } catch (error) {
      setProblem(errorText(error));
    } finally {
      setBusy(false);
    }
  }

  const title = registering ? t("register") : t("logIn");
  return (
    <main id="login-view" class="login">
      <h1>{t("appName")}</h1>
      <form
        id="login-form"
        aria-label={title}
        onSubmit={(event) => {
          event.preventDefault();
          void submit(event.currentTarget);
        }}
      >
        <h2>{title}</h2>
        <label>
          {t("username")}
          <input name="username" autocomplete="username" required minLength={registering ? 4 : undefined} maxLength={32} />
        </label>
        <label>
          {t("password")}
          <input
            name="password"
            type="password"
            autocomplete={registering ? "new-password" : "current-password"}
            required
            minLength={registering ? 4 : undefined}
            maxLength={128}
          />
        </label>
        <button id="login-submit" type="submit" disabled={busy}>
          {title}
        </button>
        <ErrorLine id="login-error" text={problem} />
      </form>
      <button type="button" class="link" onClick={() => setRegistering(!registering)}>
        {registering ? t("haveAccount") : t("needAccount")}
      </button>
    </main>
  );
}

function ChannelLink({ channel, current }: { channel: Channel; current: boolean }) {
  const unread = channel.readState?.unreadCount ?? 0;
  const mentions = channel.readState?.mentionCount ?? 0;
  return (
    <a href={`#/c/${channel.id}`} aria-current={current ? "page" : undefined} title={channel.description}>
      <span class="channel-name">{channel.name}</span>
      {mentions > 0 && (
        <span class="badge mention-badge">
          @{mentions}
          <span class="visually-hidden"> {t("mentions", { n: mentions })}</span>
        </span>
      )}
      {unread > 0 && (
        <span class="badge unread-badge">
          {unread}
          <span class="visually-hidden"> {t("unread", { n: unread })}</span>
        </span>
      )}
    </a>
  );
}

function Sidebar({ route, store }: { route: Route; store: State }) {
  const pending = store.pending.size;
  const link = (page: Route["page"], href: string, label: string, extra?: string) => (
    <li>
      <a href={href} aria-current={route.page === page ? "page" : undefined}>
        {label}
        {extra}
      </a>
    </li>
  );
  return (
    <nav class="sidebar" aria-label={t("channels")}>
      <ul class="places">
        {link("browse", "#/browse", t("browse"))}
        {link("new", "#/new", t("newChannel"))}
        <li>
          <a href="#/inbox" aria-current={route.page === "inbox" ? "page" : undefined}>
            {t("inbox")}
            {pending > 0 && <span class="badge unread-badge">{pending}</span>}
          </a>
        </li>
        {store.session?.moderator && link("moderation", "#/moderation", t("moderation"))}
      </ul>
      <h2>{t("myChannels")}</h2>
      <ul id="channel-list" class="channel-list">
        {store.myChannels.map((channel) => (
          <li key={channel.id.toString()}>
            <ChannelLink channel={channel} current={route.page === "channel" && route.id === channel.id} />
          </li>
        ))}
      </ul>
      {store.channelsLoaded && store.myChannels.length === 0 && <p class="hint">{t("noChannels")}</p>}
      {store.channelsError && <ErrorLine id="channels-error" text={store.channelsError} />}
    </nav>
  );
}

function Browse() {
  const store = useStore();
  const [channels, setChannels] = useState<Channel[] | null>(null);
  const [filter, setFilter] = useState("");
  const [problem, setProblem] = useState("");
  useEffect(() => {
    allPages(async (pageToken) => {
      const page = await api.channels.listChannels({ pageToken, pageSize: 200 });
      return { items: page.channels, nextPageToken: page.nextPageToken };
    })
      .then(setChannels)
      .catch((error: unknown) => endedSession(error) || setProblem(errorText(error)));
    void loadMyRequests();
  }, []);

  async function ask(channel: Channel): Promise<void> {
    setProblem("");
    try {
      rememberRequest(await api.joinRequests.createJoinRequest({ channelId: channel.id }));
    } catch (error) {
      if (endedSession(error)) return;
      // Asked already (from another tab or device): show that request.
      if (errorText(error).includes("already exists")) await loadMyRequests();
      else setProblem(errorText(error));
    }
  }

  const words = filter.trim().toLowerCase();
  const shown = (channels ?? []).filter((channel) =>
    `${channel.name} ${channel.slug} ${channel.description}`.toLowerCase().includes(words),
  );
  const mine = new Set(store.myChannels.map((channel) => channel.id.toString()));
  return (
    <section class="page" aria-labelledby="browse-title">
      <h2 id="browse-title">{t("browse")}</h2>
      <label class="filter">
        {t("searchChannels")}
        <input type="search" value={filter} onInput={(event) => setFilter(event.currentTarget.value)} />
      </label>
      {problem && <ErrorLine text={problem} />}
      <ul class="cards" aria-label={t("allChannels")}>
        {shown.map((channel) => {
          const key = channel.id.toString();
          const member = mine.has(key);
          return (
            <li key={key} class="card">
              <h3>{channel.name}</h3>
              <p>{channel.description}</p>
              <p class="meta">{t("memberCount", { n: channel.memberCount })}</p>
              {member || store.session?.moderator ? (
                <a class="button" href={`#/c/${channel.id}`} aria-label={`${t("open")} ${channel.name}`}>
                  {t("open")}
                </a>
              ) : store.asked.has(key) ? (
                <span class="meta" role="status">
                  {t("requestPending")}
                </span>
              ) : (
                <button type="button" aria-label={`${t("askToJoin")}: ${channel.name}`} onClick={() => void ask(channel)}>
                  {t("askToJoin")}
                </button>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function NewChannel() {
  const [problem, setProblem] = useState("");
  async function submit(form: HTMLFormElement): Promise<void> {
    const data = new FormData(form);
    setProblem("");
    try {
      const channel = await api.channels.createChannel({
        name: String(data.get("name")),
        description: String(data.get("description")),
      });
      update({ myChannels: [...getState().myChannels, channel] });
      window.location.hash = `#/c/${channel.id}`;
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }
  return (
    <section class="page" aria-labelledby="new-title">
      <h2 id="new-title">{t("newChannel")}</h2>
      <form
        class="stacked"
        onSubmit={(event) => {
          event.preventDefault();
          void submit(event.currentTarget);
        }}
      >
        <label>
          {t("name")}
          <input name="name" required maxLength={100} />
        </label>
        <label>
          {t("description")}
          <textarea name="description" rows={3} maxLength={1000} />
        </label>
        <button type="submit">{t("create")}</button>
        {problem && <ErrorLine text={problem} />}
      </form>
    </section>
  );
}

function noticeText(notice: InboxEvent): string {
  const { event } = notice;
  switch (event.case) {
    case "joinRequest":
      return t("wantsToJoin", {
        user: event.value.joinRequest?.username ?? "",
        channel: event.value.channel?.name ?? "",
      });
    case "joinRequestDecided":
      return t(event.value.joinRequest?.status === JoinRequestStatus.ACCEPTED ? "requestAccepted" : "requestDeclined", {
        channel: event.value.channel?.name ?? "",
      });
    case "membership": {
      const channel = event.value.channel?.name ?? "";
      const change = event.value.change;
      if (change === MembershipChange.ADDED) return t("addedTo", { channel });
      if (change === MembershipChange.REMOVED) return t("removedFrom", { channel });
      return t("channelDeleted", { channel });
    }
    case "mention":
      return t("mentionedYou", {
        user: event.value.message?.senderUsername ?? "",
        channel: event.value.channel?.name ?? "",
        text: event.value.message?.content.slice(0, 120) ?? "",
      });
    default:
      return "";
  }
}

function Inbox() {
  const store = useStore();
  const [problem, setProblem] = useState("");

  async function decide(id: string, accept: boolean): Promise<void> {
    setProblem("");
    const pending = store.pending.get(id);
    if (!pending) return;
    try {
      const request = { requestId: pending.request.id };
      const decided = accept
        ? await api.joinRequests.acceptJoinRequest(request)
        : await api.joinRequests.declineJoinRequest(request);
      settle(decided);
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  const requests = [...store.pending.entries()];
  return (
    <section class="page" aria-labelledby="inbox-title">
      <h2 id="inbox-title">{t("inbox")}</h2>
      <h3>{t("pendingRequests")}</h3>
      {problem && <ErrorLine text={problem} />}
      {requests.length === 0 ? (
        <p class="hint">{t("noPendingRequests")}</p>
      ) : (
        <ul class="requests" aria-label={t("pendingRequests")}>
          {requests.map(([id, { request, channel }]) => {
            const text = t("wantsToJoin", { user: request.username, channel: channel.name });
            return (
              <li key={id} class="card">
                <p>{text}</p>
                <button type="button" aria-label={`${t("accept")}: ${text}`} onClick={() => void decide(id, true)}>
                  {t("accept")}
                </button>
                <button type="button" aria-label={`${t("decline")}: ${text}`} onClick={() => void decide(id, false)}>
                  {t("decline")}
                </button>
              </li>
            );
          })}
        </ul>
      )}
      <h3>{t("notifications")}</h3>
      {store.notices.length === 0 ? (
        <p class="hint">{t("noNotifications")}</p>
      ) : (
        <ul class="notices" aria-label={t("notifications")}>
          {store.notices.map((notice) => {
            const when = notice.createdAt ? timestampDate(notice.createdAt) : null;
            const channelId =
              notice.event.case === "mention" ? notice.event.value.channel?.id : undefined;
            return (
              <li key={notice.id.toString()}>
                {when && <time dateTime={when.toISOString()}>{shortTime(when)}</time>}{" "}
                {channelId ? <a href={`#/c/${channelId}`}>{noticeText(notice)}</a> : noticeText(notice)}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

interface KnownUser {
  id: bigint;
  username: string;
  channels: number;
}

function Moderation() {
  const [channels, setChannels] = useState<Channel[]>([]);
  const [people, setPeople] = useState<KnownUser[]>([]);
  const [states, setStates] = useState<Map<string, User>>(new Map());
  const [problem, setProblem] = useState("");
  const [name, setName] = useState("");
  const [found, setFound] = useState<User | null>(null);

  useEffect(() => {
    void (async () => {
      try {
        const all = await allPages(async (pageToken) => {
          const page = await api.channels.listChannels({ pageToken, pageSize: 200 });
          return { items: page.channels, nextPageToken: page.nextPageToken };
        });
        setChannels(all);
        const found = new Map<string, KnownUser>();
        for (const channel of all) {
          const page = await api.members.listMembers({ channelId: channel.id, pageSize: 200 });
          for (const member of page.members) {
            rememberUser(member.userId, member.username);
            const key = member.userId.toString();
            const known = found.get(key) ?? { id: member.userId, username: member.username, channels: 0 };
            known.channels += 1;
            found.set(key, known);
          }
        }
        setPeople([...found.values()].sort((a, b) => a.username.localeCompare(b.username)));
      } catch (error) {
        if (!endedSession(error)) setProblem(errorText(error));
      }
    })();
  }, []);

  async function setBlocked(id: bigint, block: boolean): Promise<void> {
    setProblem("");
    try {
      const user = block ? await api.users.blockUser({ userId: id }) : await api.users.unblockUser({ userId: id });
      known(user);
    } catch (error) {
      if (!endedSession(error)) setProblem(errorText(error));
    }
  }

  function known(user: User): void {
    rememberUser(user.id, user.username);
    setStates((current) => new Map(current).set(user.id.toString(), user));
    setFound((current) => (current?.id === user.id ? user : current));
  }

  async function find(): Promise<void> {
    setProblem("");
    setFound(null);
    try {
      const user = await api.users.lookupUser({ username: name.trim() });
      known(user);
      setFound(user);
    } catch (error) {
      if (endedSession(error)) return;
      setProblem(failure(error).code === Code.NotFound ? t("noSuchUser", { name: name.trim() }) : errorText(error));
    }
  }

  function blockButton(user: { id: bigint; username: string }) {
    const isBlocked = blocked(user.id);
    return (
      <button
        type="button"
        aria-label={`${isBlocked ? t("unblock") : t("block")} ${user.username}`}
        onClick={() => void setBlocked(user.id, !isBlocked)}
      >
        {isBlocked ? t("unblock") : t("block")}
      </button>
    );
  }

  const blocked = (id: bigint) => states.get(id.toString())?.isActive === false;
  // Users met outside the channels' member lists (found by name), but the one shown above.
  const extra = [...states.values()].filter(
    (user) => user.id !== found?.id && !people.some((person) => person.id === user.id),
  );
  const rows: KnownUser[] = [...people, ...extra.map((user) => ({ id: user.id, username: user.username, channels: 0 }))];
  return (
    <section class="page" aria-labelledby="moderation-title">
      <h2 id="moderation-title">{t("moderation")}</h2>
      <h3>{t("findUser")}</h3>
      <form
        class="inline"
        aria-label={t("findUser")}
        onSubmit={(event) => {
          event.preventDefault();
          void find();
        }}
      >
        <label>
          {t("username")}
          <input value={name} required maxLength={32} onInput={(event) => setName(event.currentTarget.value)} />
        </label>
        <button type="submit">{t("find")}</button>
      </form>
      {problem && <ErrorLine text={problem} />}
      {found && (
        <section class="card found-user" aria-label={t("foundUser")}>
          <p>
            <strong>{found.username}</strong> · {t("userNumber", { id: found.id })} ·{" "}
            {found.role === Role.MODERATOR ? `${t("moderator")} · ` : ""}
            <span role="status">{blocked(found.id) ? t("blocked") : t("active")}</span>
          </p>
          {blockButton(found)}
        </section>
      )}
      <h3>{t("users")}</h3>
      <table class="users">
        <thead>
          <tr>
            <th scope="col">{t("username")}</th>
            <th scope="col">{t("userId")}</th>
            <th scope="col">{t("channels")}</th>
            <th scope="col">
              <span class="visually-hidden">{t("block")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((person) => (
            <tr key={person.id.toString()}>
              <th scope="row">
                {person.username}
                {blocked(person.id) && <span class="badge">{t("blocked")}</span>}
              </th>
              <td>{person.id.toString()}</td>
              <td>{person.channels}</td>
              <td>{blockButton(person)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>{t("allChannels")}</h3>
      <ul class="cards" aria-label={t("allChannels")}>
        {channels.map((channel) => (
          <li key={channel.id.toString()} class="card">
            <h4>
              <a href={`#/c/${channel.id}`}>{channel.name}</a>
            </h4>
            <p>{channel.description}</p>
            <p class="meta">{t("memberCount", { n: channel.memberCount })}</p>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Search({ query }: { query: string }) {
  const store = useStore();
  const [results, setResults] = useState<SearchResult[] | null>(null);
  const [problem, setProblem] = useState("");
  useEffect(() => {
    setResults(null);
    setProblem("");
    if (!query) return;
    api.chat
      .searchMessages({ query, pageSize: 50 })
      .then((response) => setResults(response.results))
      .catch((error: unknown) => endedSession(error) || setProblem(errorText(error)));
  }, [query]);
  const names = new Map(store.myChannels.map((channel) => [channel.id.toString(), channel.name]));
  return (
    <section class="page" aria-labelledby="search-title">
      <h2 id="search-title">
        {t("results")}: {query}
      </h2>
      {problem && <ErrorLine text={problem} />}
      {results && results.length === 0 && <p class="hint">{t("noResults")}</p>}
      <ol class="results" aria-label={t("results")}>
        {(results ?? []).map(({ message, snippet }) =>
          message ? (
            <li key={message.id.toString()} class="card">
              <p class="meta">
                <span class="sender">{message.senderUsername}</span>{" "}
                <a href={`#/c/${message.channelId}`}>
                  {t("inChannel", { channel: names.get(message.channelId.toString()) ?? `#${message.channelId}` })}
                </a>
              </p>
              {/* The server escapes the content as HTML and adds only <mark>. */}
              <p class="snippet" dangerouslySetInnerHTML={{ __html: snippet }} />
            </li>
          ) : null,
        )}
      </ol>
    </section>
  );
}

function Home() {
  return (
    <section class="page home">
      <h2 id="room-title">{t("chooseChannel")}</h2>
    </section>
  );
}

function Shell() {
  const store = useStore();
  const route = useRoute();
  const [query, setQuery] = useState(route.page === "search" ? route.query : "");
  const session = store.session;
  if (!session) return <Login />;
  const inboxText = store.inbox === "live" ? "" : store.inbox === "connecting" ? t("connecting") : t("reconnecting");
  const content = (() => {
    switch (route.page) {
      case "channel":
        return <Room key={route.id.toString()} channelId={route.id} />;
      case "browse":
        return <Browse />;
      case "new":
        return <NewChannel />;
      case "inbox":
        return <Inbox />;
      case "moderation":
        return session.moderator ? <Moderation /> : <Home />;
      case "search":
        return <Search query={route.query} />;
      default:
        return <Home />;
    }
  })();
  return (
    <div id="chat-view" class="chat" data-page={route.page}>
      <a class="skip" href="#main">
        {t("skipToContent")}
      </a>
      <header class="topbar">
        <h1>{t("appName")}</h1>
        <form
          role="search"
          class="search"
          onSubmit={(event) => {
            event.preventDefault();
            if (query.trim()) window.location.hash = `#/search?q=${encodeURIComponent(query.trim())}`;
          }}
        >
          <input
            type="search"
            aria-label={t("searchMessages")}
            placeholder={t("searchMessages")}
            value={query}
            maxLength={256}
            onInput={(event) => setQuery(event.currentTarget.value)}
          />
          <button type="submit">{t("search")}</button>
        </form>
        <span id="inbox-status" role="status" class={inboxText ? "status problem" : "status"}>
          {inboxText}
        </span>
        <span id="me" class="me">
          {session.username}
        </span>
        {session.moderator && <span class="badge">{t("moderator")}</span>}
        <button id="logout" type="button" onClick={() => logOut()}>
          {t("logOut")}
        </button>
      </header>
      <Sidebar route={route} store={store} />
      <main id="main" class="main-area">
        {route.page !== "home" && (
          <a class="back" href="#/">
            ← {t("channels")}
          </a>
        )}
        {content}
      </main>
    </div>
  );
}

document.documentElement.lang = language;
if (getState().session) start();
const root = document.getElementById("app");
if (root) render(<Shell />, root);
