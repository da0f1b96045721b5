// The browser console Posthorn serves at /console: paste a key, see recent
// messages and the live event stream (WatchMessages over gRPC-Web), open a
// message's timeline, send a test message from a template with a form made
// from its variables, and preview templates. Built with the generated
// client by scripts/build-console.sh into src/pages/console/.

import "./console.css";

import { toJson } from "@bufbuild/protobuf";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

import { EventType, MessageStatus, Posthorn, PosthornError } from "../src/index.js";
import type { Message, MessageEvent, Template, TemplateVariable } from "../src/index.js";

const KEY_STORAGE = "posthorn-console-key";

let posthorn: Posthorn | undefined;
let watching: AbortController | undefined;
let templates: Template[] = [];

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

function make<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text = "",
  attributes: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

const statusName = (status: MessageStatus) => (MessageStatus[status] ?? "UNKNOWN").toLowerCase();
const eventName = (type: EventType) => (EventType[type] ?? "UNKNOWN").toLowerCase();
const when = (t: Timestamp | undefined) => (t ? timestampDate(t).toLocaleString() : "");

function say(where: HTMLElement, error: unknown) {
  where.textContent = error instanceof Error ? error.message : String(error);
  where.className = "problem";
}

// --- Messages -------------------------------------------------------------

// The newest status the live stream has shown for each message, numbered
// in the order the events arrived, so that a list fetched while events
// came in does not show an older status than the stream already has.
let eventsSeen = 0;
const streamed = new Map<string, { seen: number; status: MessageStatus }>();
let loads = 0;

async function loadMessages() {
  if (!posthorn) return;
  const load = ++loads;
  const from = eventsSeen;
  const rows: HTMLTableRowElement[] = [];
  for await (const message of posthorn.listMessages({ pageSize: 20 })) {
    const newer = streamed.get(message.id);
    if (newer && newer.seen > from) message.status = newer.status;
    rows.push(messageRow(message));
    if (rows.length >= 20) break;
  }
  // A later load started after this one: it shows at least as much.
  if (load !== loads) return;
  element<HTMLTableSectionElement>("message-rows").replaceChildren(...rows);
  element("messages-empty").hidden = rows.length > 0;
}

function messageRow(message: Message): HTMLTableRowElement {
  const row = make("tr", "", { "data-message-id": message.id });
  const open = make("button", message.id, { class: "link", type: "button" });
  open.addEventListener("click", () => void openMessage(message.id));
  const cell = make("td");
  cell.append(open);
  row.append(
    cell,
    make("td", message.to.join(", ")),
    make("td", message.subject),
    make("td", statusName(message.status), { class: `status ${statusName(message.status)}` }),
    make("td", when(message.createdAt)),
  );
  return row;
}

async function openMessage(id: string) {
  if (!posthorn) return;
  const panel = element("message-detail");
  panel.replaceChildren(make("p", "Loading…"));
  try {
    const message = await posthorn.getMessage(id);
    const heading = make("h3", message.subject || "(no subject)");
    const facts = make("p", `${message.id} · from ${message.fromEmail} · to ${message.to.join(", ")} · ${statusName(message.status)}`);
    const timeline = make("ol", "", { class: "timeline", "data-message-id": message.id });
    for (const event of message.events) {
      const details = event.details?.smtpReply || event.details?.reason || event.details?.url || "";
      timeline.append(
        make("li", `${when(event.occurredAt)} — ${eventName(event.type)}${event.recipient ? ` ${event.recipient}` : ""}${details ? ` (${details})` : ""}`, {
          "data-type": eventName(event.type),
        }),
      );
    }
    panel.replaceChildren(heading, facts, timeline);
  } catch (error) {
    say(panel, error);
  }
}

// --- Live events ------------------------------------------------------------

async function watch() {
  if (!posthorn) return;
  watching?.abort();
  const stop = new AbortController();
  watching = stop;
  const list = element<HTMLOListElement>("events");
  const state = element("live-state");
  state.textContent = "live";
  state.className = "live";
  try {
    for await (const event of posthorn.watch({}, stop.signal)) showEvent(list, event);
    state.textContent = "ended";
  } catch (error) {
    if (!stop.signal.aborted) say(state, error);
  }
  state.className = stop.signal.aborted ? "" : state.className;
}

function showEvent(list: HTMLOListElement, event: MessageEvent) {
  const type = eventName(event.type);
  const item = make("li", "", { "data-message-id": event.messageId, "data-type": type });
  item.append(
    make("time", when(event.occurredAt)),
    make("span", type, { class: `status ${type}` }),
    make("span", `${event.messageId}${event.recipient ? ` → ${event.recipient}` : ""}`),
  );
  list.prepend(item);
  while (list.children.length > 200) list.lastElementChild?.remove();
  // Keep the messages table in step with the stream.
  streamed.set(event.messageId, { seen: ++eventsSeen, status: event.status });
  const row = document.querySelector<HTMLTableRowElement>(`tr[data-message-id="${event.messageId}"]`);
  const status = row?.children[3];
  if (status) {
    status.textContent = statusName(event.status);
    status.className = `status ${statusName(event.status)}`;
  } else if (type === "queued" || type === "scheduled") {
    void loadMessages();
  }
}

// --- Templates: browse, preview, send --------------------------------------

async function loadTemplates() {
  if (!posthorn) return;
  templates = [];
  for await (const template of posthorn.listTemplates({ pageSize: 100 })) templates.push(template);
  const picker = element<HTMLSelectElement>("send-template");
  const list = element("template-list");
  picker.replaceChildren();
  list.replaceChildren();
  let category = "";
  for (const template of templates) {
    picker.append(make("option", `${template.category} / ${template.name}`, { value: template.slug }));
    if (template.category !== category) {
      category = template.category;
      list.append(make("h3", category));
    }
    const open = make("button", template.name, { class: "link", type: "button", "data-slug": template.slug });
    open.title = template.description;
    open.addEventListener("click", () => void preview(template));
    list.append(open);
  }
  picker.value = templates.find((t) => t.slug === "password-reset")?.slug ?? templates[0]?.slug ?? "";
  variablesForm();
}

function exampleOf(variable: TemplateVariable): JsonValue {
  return variable.example ? toJson(ValueSchema, variable.example) : "";
}

/** The variables as a nested object: "user.first_name" → {user: {first_name}}. */
function nest(pairs: [string, JsonValue][]): JsonObject {
  const root: JsonObject = {};
  for (const [path, value] of pairs) {
    const parts = path.split(".");
    let at = root;
    for (const part of parts.slice(0, -1)) {
      if (typeof at[part] !== "object" || at[part] === null || Array.isArray(at[part])) at[part] = {};
      at = at[part] as JsonObject;
    }
    at[parts[parts.length - 1]] = value;
  }
  return root;
}

async function preview(template: Template) {
  if (!posthorn) return;
  const frame = element<HTMLIFrameElement>("preview-frame");
  const caption = element("preview-caption");
  caption.textContent = `${template.name} — ${template.description}`;
  caption.className = "";
  try {
    const variables = nest(template.variables.map((v) => [v.name, exampleOf(v)]));
    const rendered = await posthorn.renderTemplate({ slug: template.slug, variables });
    caption.textContent = `${template.name}: “${rendered.subject}”`;
    frame.srcdoc = rendered.html;
  } catch (error) {
    say(caption, error);
  }
}

function variablesForm() {
  const slug = element<HTMLSelectElement>("send-template").value;
  const template = templates.find((t) => t.slug === slug);
  const fields = element("send-variables");
  fields.replaceChildren();
  for (const variable of template?.variables ?? []) {
    const example = exampleOf(variable);
    const label = make("label");
    label.append(make("span", `${variable.name}${variable.required ? " *" : ""}`));
    const input = make("input", "", {
      name: variable.name,
      "data-json": String(typeof example !== "string"),
      placeholder: variable.description,
    });
    input.value = typeof example === "string" ? example : JSON.stringify(example);
    input.required = variable.required;
    label.append(input, make("small", variable.description));
    fields.append(label);
  }
}

async function send(form: HTMLFormElement) {
  if (!posthorn) return;
  const result = element("send-result");
  const data = new FormData(form);
  const pairs: [string, JsonValue][] = [];
  for (const input of form.querySelectorAll<HTMLInputElement>("#send-variables input")) {
    if (!input.value) continue;
    let value: JsonValue = input.value;
    if (input.dataset.json === "true") {
      try {
        value = JSON.parse(input.value) as JsonValue;
      } catch {
        value = input.value;
      }
    }
    pairs.push([input.name, value]);
  }
  try {
    const sent = await posthorn.sendEmail({
      fromEmail: String(data.get("from") ?? ""),
      to: String(data.get("to") ?? "").split(",").map((a) => a.trim()).filter(Boolean),
      template: String(data.get("template") ?? ""),
      variables: nest(pairs),
    });
    result.textContent = `Accepted ${sent.id} (${statusName(sent.status)})`;
    result.className = "ok";
    result.dataset.messageId = sent.id;
  } catch (error) {
    say(result, error);
    if (error instanceof PosthornError) {
      for (const v of error.fieldViolations) result.append(make("div", `${v.field}: ${v.description}`));
    }
  }
}

// --- Start ------------------------------------------------------------------

async function connect(key: string) {
  const state = element("connection");
  posthorn = new Posthorn({ baseUrl: window.location.origin, key });
  try {
    await loadMessages();
    sessionStorage.setItem(KEY_STORAGE, key);
    state.textContent = "connected";
    state.className = "ok";
    document.body.classList.add("connected");
    void watch();
    await loadTemplates();
  } catch (error) {
    posthorn = undefined;
    say(state, error);
  }
}

function start() {
  const keyForm = element<HTMLFormElement>("key-form");
  const keyInput = element<HTMLInputElement>("key");
  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void connect(keyInput.value.trim());
  });
  element("refresh").addEventListener("click", () => void loadMessages());
  element("send-template").addEventListener("change", variablesForm);
  const sendForm = element<HTMLFormElement>("send-form");
  sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void send(sendForm);
  });
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    keyInput.value = saved;
    void connect(saved);
  }
}

start();
