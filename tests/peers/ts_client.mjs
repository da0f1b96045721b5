// Drives the TypeScript client package (clients/typescript, built) from
// Node over gRPC-Web, as an application would, against the server at
// argv[2] with the key argv[3]; prints what it saw as one JSON object.

import { Posthorn, PosthornError, EventType, MessageStatus, isDelivered } from "../../clients/typescript/dist/index.js";

const [baseUrl, key] = process.argv.slice(2);
const posthorn = new Posthorn({ baseUrl, key });

async function refused(call) {
  try {
    await call();
    return null;
  } catch (error) {
    if (!(error instanceof PosthornError)) throw error;
    return {
      code: error.code,
      reason: error.reason,
      fields: error.fieldViolations.map((v) => v.field),
      message: error.message,
    };
  }
}

const first = await posthorn.sendEmail({
  fromEmail: "app@acme.example",
  to: ["ada@example.com"],
  template: "password-reset",
  variables: { reset_url: "https://acme.example/r/1", user: { first_name: "Ada" } },
});
const others = [];
for (let i = 0; i < 2; i++) {
  others.push(await posthorn.sendEmail({ fromEmail: "app@acme.example", to: [`p${i}@example.com`], subject: "Hi", text: "x" }));
}

// Server streaming over gRPC-Web: the message's events until delivered.
const watched = [];
const stop = new AbortController();
for await (const event of posthorn.watch({ messageId: first.id }, stop.signal)) {
  watched.push(EventType[event.type]);
  if (isDelivered(event.status)) stop.abort();
}

const message = await posthorn.getMessage(first.id);
const listed = [];
for await (const m of posthorn.listMessages({ pageSize: 2 })) listed.push(m.id);
const auth = [];
for await (const t of posthorn.listTemplates({ category: "auth", pageSize: 4 })) auth.push(t.slug);

console.log(JSON.stringify({
  sent: [first.id, ...others.map((m) => m.id)],
  watched,
  status: MessageStatus[message.status],
  timeline: message.events.map((e) => EventType[e.type]),
  listed,
  auth,
  unverified: await refused(() =>
    posthorn.sendEmail({ fromEmail: "x@globex.example", to: ["a@example.com"], subject: "Hi", text: "x" })),
  invalid: await refused(() =>
    posthorn.sendEmail({ fromEmail: "app@acme.example", to: [], subject: "Hi\r\nBcc: x", text: "x" })),
}));
