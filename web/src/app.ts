// AtomChat in the browser: grpc-web through Envoy, at the page's own origin.
// Log in, list my channels, follow one with Subscribe (history, then live
// messages; resumed with after_seq when the stream drops) and post with
// SendMessage.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChannelService } from "./gen/atomchat/v1/channels_pb";
import { ChatService } from "./gen/atomchat/v1/chat_pb";
import type { Channel, Message } from "./gen/atomchat/v1/resources_pb";
import { UserService } from "./gen/atomchat/v1/users_pb";

const SESSION_KEY = "atomchat.session";
/** Messages shown on opening a channel; a resume asks for everything after the last seq. */
const HISTORY_LIMIT = 50;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;

interface Session {
  token: string;
  username: string;
}

let session: Session | null = readSession();

const withToken: Interceptor = (next) => (request) => {
  if (session) {
    request.header.set("authorization", `Bearer ${session.token}`);
  }
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [withToken],
});
const users = createClient(UserService, transport);
const channels = createClient(ChannelService, transport);
const chat = createClient(ChatService, transport);

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) {
    throw new Error(`#${id} is missing from the page`);
  }
  return found;
}

const ui = {
  loginView: element("login-view", HTMLElement),
  loginForm: element("login-form", HTMLFormElement),
  loginSubmit: element("login-submit", HTMLButtonElement),
  loginError: element("login-error", HTMLParagraphElement),
  chatView: element("chat-view", HTMLDivElement),
  me: element("me", HTMLSpanElement),
  logout: element("logout", HTMLButtonElement),
  channelList: element("channel-list", HTMLUListElement),
  channelsError: element("channels-error", HTMLParagraphElement),
  roomTitle: element("room-title", HTMLHeadingElement),
  roomStatus: element("room-status", HTMLSpanElement),
  messages: element("messages", HTMLOListElement),
  composer: element("composer", HTMLFormElement),
  content: element("content", HTMLTextAreaElement),
  send: element("send", HTMLButtonElement),
  composerError: element("composer-error", HTMLParagraphElement),
};

function readSession(): Session | null {
  const stored = sessionStorage.getItem(SESSION_KEY);
  return stored ? (JSON.parse(stored) as Session) : null;
}

function errorText(error: unknown): string {
  return ConnectError.from(error).rawMessage;
}

/** A random version 4 UUID; also where crypto.randomUUID is missing (plain-HTTP hosts). */
function newClientMessageId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

function shortTime(date: Date): string {
  const today = new Date().toDateString() === date.toDateString();
  return (today ? timeFormat : dateTimeFormat).format(date);
}

function renderMessage(message: Message): HTMLLIElement {
  const item = document.createElement("li");
  item.className = "message";
  item.dataset.seq = message.seq.toString();
  if (message.senderUsername === session?.username) {
    item.classList.add("mine");
  }
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.textContent = message.senderUsername;
  const time = document.createElement("time");
  if (message.createdAt) {
    const date = timestampDate(message.createdAt);
    time.dateTime = date.toISOString();
    time.title = date.toLocaleString();
    time.textContent = shortTime(date);
  }
  const content = document.createElement("p");
  content.className = "content";
  content.textContent = message.content;
  item.append(sender, time, content);
  return item;
}

/** One open channel: its Subscribe stream, resumed after the last seq seen. */
class Room {
  private readonly stop = new AbortController();
  private lastSeq: bigint | undefined;

  constructor(readonly channel: Channel) {}

  close(): void {
    this.stop.abort();
  }

  async follow(): Promise<void> {
    const signal = this.stop.signal;
    let retryMs = RETRY_FIRST_MS;
    while (!signal.aborted) {
      this.status(this.lastSeq === undefined ? "Connecting…" : "Reconnecting…");
      try {
        const events = chat.subscribe(
          { channelId: this.channel.id, afterSeq: this.lastSeq, historyLimit: HISTORY_LIMIT },
          { signal },
        );
        for await (const { event } of events) {
          switch (event.case) {
            case "joined":
              retryMs = RETRY_FIRST_MS;
              this.status("Live");
              break;
            case "message":
              this.show([event.value]);
              break;
            case "messages":
              this.show(event.value.messages);
              break;
          }
        }
      } catch (error) {
        if (signal.aborted) {
          return;
        }
        const failure = ConnectError.from(error);
        if (failure.code === Code.Unauthenticated) {
          logOut(failure.rawMessage);
          return;
        }
        if (failure.code === Code.PermissionDenied || failure.code === Code.NotFound) {
          this.status(failure.rawMessage, true);
          return;
        }
        this.status(`Disconnected: ${failure.rawMessage}`, true);
      }
      await pause(retryMs, signal);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  }

  private show(messages: Message[]): void {
    const list = ui.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    for (const message of messages) {
      if (this.lastSeq === undefined || message.seq > this.lastSeq) {
        list.append(renderMessage(message));
        this.lastSeq = message.seq;
      }
    }
    if (atBottom) {
      list.scrollTop = list.scrollHeight;
    }
  }

  private status(text: string, problem = false): void {
    if (!this.stop.signal.aborted) {
      ui.roomStatus.textContent = text;
      ui.roomStatus.classList.toggle("problem", problem);
    }
  }
}

let room: Room | null = null;
/** The message being sent, so that sending it again after a failure reuses its id. */
let draft: { content: string; clientMessageId: string } | null = null;

function openRoom(channel: Channel, button: HTMLButtonElement): void {
  room?.close();
  for (const other of ui.channelList.querySelectorAll("button")) {
    other.setAttribute("aria-current", String(other === button));
  }
  ui.roomTitle.textContent = channel.name;
  ui.messages.replaceChildren();
  ui.composerError.textContent = "";
  ui.composer.hidden = false;
  draft = null;
  room = new Room(channel);
  void room.follow();
}

async function loadChannels(): Promise<void> {
  ui.channelList.replaceChildren();
  ui.channelsError.textContent = "";
  try {
    let pageToken = "";
    do {
      const page = await channels.listMyChannels({ pageToken });
      for (const channel of page.channels) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = channel.name;
        button.title = channel.description;
        button.addEventListener("click", () => openRoom(channel, button));
        const item = document.createElement("li");
        item.append(button);
        ui.channelList.append(item);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (!ui.channelList.hasChildNodes()) {
      ui.channelsError.textContent = "You are not a member of any channel yet.";
    }
  } catch (error) {
    if (ConnectError.from(error).code === Code.Unauthenticated) {
      logOut(errorText(error));
    } else {
      ui.channelsError.textContent = errorText(error);
    }
  }
}

function showChat(current: Session): void {
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.me.textContent = current.username;
  ui.roomTitle.textContent = "Choose a channel";
  ui.roomStatus.textContent = "";
  ui.messages.replaceChildren();
  ui.composer.hidden = true;
  void loadChannels();
}

function logOut(reason = ""): void {
  room?.close();
  room = null;
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  ui.loginError.textContent = reason;
  ui.loginForm.reset();
}

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(ui.loginForm);
  ui.loginError.textContent = "";
  ui.loginSubmit.disabled = true;
  try {
    const response = await users.login({
      username: String(form.get("username")),
      password: String(form.get("password")),
    });
    session = { token: response.accessToken, username: response.user?.username ?? "" };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    showChat(session);
  } catch (error) {
    ui.loginError.textContent = errorText(error);
  } finally {
    ui.loginSubmit.disabled = false;
  }
});

ui.logout.addEventListener("click", () => logOut());

ui.composer.addEventListener("submit", async (event) => {
  event.preventDefault();
  const current = room;
  if (!current || ui.send.disabled) {
    return;
  }
  const content = ui.content.value;
  if (draft?.content !== content) {
    draft = { content, clientMessageId: newClientMessageId() };
  }
  ui.composerError.textContent = "";
  ui.send.disabled = true;
  try {
    await chat.sendMessage({
      channelId: current.channel.id,
      content,
      clientMessageId: draft.clientMessageId,
    });
    if (room === current) {
      ui.content.value = "";
      draft = null;
    }
  } catch (error) {
    if (ConnectError.from(error).code === Code.Unauthenticated) {
      logOut(errorText(error));
    } else if (room === current) {
      ui.composerError.textContent = errorText(error);
    }
  } finally {
    ui.send.disabled = false;
    ui.content.focus();
  }
});

ui.content.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

if (session) {
  showChat(session);
} else {
  logOut();
}
