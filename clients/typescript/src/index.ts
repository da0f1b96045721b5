// Posthorn's TypeScript client: the generated Connect-ES services (under
// ./gen), and a small client over them that sets the key, raises
// PosthornError with the API's error details, pages through lists and
// iterates WatchMessages. It speaks gRPC-Web, so it runs in browsers and
// in Node (18+, with its fetch) alike.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { MessageInitShape } from "@bufbuild/protobuf";

import { ContactsService } from "./gen/posthorn/v1/contacts_pb.js";
import type { Message, MessageEvent } from "./gen/posthorn/v1/email_pb.js";
import { MessageStatus } from "./gen/posthorn/v1/email_pb.js";
import { MessagesService } from "./gen/posthorn/v1/messages_pb.js";
import type {
  ListMessagesRequestSchema,
  WatchMessagesRequestSchema,
} from "./gen/posthorn/v1/messages_pb.js";
import { SendService } from "./gen/posthorn/v1/send_pb.js";
import type { SendEmailRequestSchema, SendEmailResponse } from "./gen/posthorn/v1/send_pb.js";
import { SuppressionsService } from "./gen/posthorn/v1/suppressions_pb.js";
import { TemplatesService } from "./gen/posthorn/v1/templates_pb.js";
import type {
  ListTemplatesRequestSchema,
  RenderTemplateRequestSchema,
  RenderTemplateResponse,
  Template,
} from "./gen/posthorn/v1/templates_pb.js";
import { WebhooksService } from "./gen/posthorn/v1/webhooks_pb.js";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

export * from "./gen/posthorn/v1/contacts_pb.js";
export * from "./gen/posthorn/v1/email_pb.js";
export * from "./gen/posthorn/v1/messages_pb.js";
export * from "./gen/posthorn/v1/send_pb.js";
export * from "./gen/posthorn/v1/suppressions_pb.js";
export * from "./gen/posthorn/v1/templates_pb.js";
export * from "./gen/posthorn/v1/webhooks_pb.js";
export { Code, ConnectError };

/** A call Posthorn refused, with the details of its google.rpc.Status. */
export class PosthornError extends Error {
  /** The gRPC code, e.g. Code.PermissionDenied. */
  readonly code: Code;
  /** The machine-readable cause (google.rpc.ErrorInfo), e.g. "SENDER_NOT_VERIFIED". */
  readonly reason: string;
  /** Each invalid field and what is wrong with it (google.rpc.BadRequest). */
  readonly fieldViolations: { field: string; description: string }[];
  /** Seconds to wait before retrying (google.rpc.RetryInfo), for rate limits and quotas. */
  readonly retryAfter: number | undefined;

  constructor(error: ConnectError) {
    const reason = error.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
    const fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations)
      .map((v) => ({ field: v.field, description: v.description }));
    const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    let text = `${Code[error.code]}: ${error.rawMessage}`;
    if (reason) text += ` (reason ${reason})`;
    for (const v of fieldViolations) text += `\n- ${v.field}: ${v.description}`;
    super(text);
    this.name = "PosthornError";
    this.code = error.code;
    this.reason = reason;
    this.fieldViolations = fieldViolations;
    this.retryAfter =
      delay === undefined ? undefined : Number(delay.seconds) + delay.nanos / 1e9;
  }

  /** The PosthornError of a failed call; other errors pass through. */
  static from(error: unknown): unknown {
    return error instanceof ConnectError ? new PosthornError(error) : error;
  }
}

export interface PosthornOptions {
  /** Where Posthorn listens, e.g. "http://localhost:7070". */
  baseUrl: string;
  /** An API key; sent as `authorization: Bearer <key>` on every call. */
  key?: string;
  /** Another transport (for example @connectrpc/connect-node's gRPC one). */
  transport?: Transport;
}

/** Posthorn over gRPC-Web: the raw service clients, and helpers over them. */
export class Posthorn {
  readonly send: Client<typeof SendService>;
  readonly messages: Client<typeof MessagesService>;
  readonly templates: Client<typeof TemplatesService>;
  readonly contacts: Client<typeof ContactsService>;
  readonly suppressions: Client<typeof SuppressionsService>;
  readonly webhooks: Client<typeof WebhooksService>;

  constructor(options: PosthornOptions) {
    const key = options.key;
    const auth: Interceptor = (next) => (request) => {
      if (key) request.header.set("authorization", `Bearer ${key}`);
      return next(request);
    };
    const transport =
      options.transport ??
      createGrpcWebTransport({ baseUrl: options.baseUrl, interceptors: [auth] });
    this.send = createClient(SendService, transport);
    this.messages = createClient(MessagesService, transport);
    this.templates = createClient(TemplatesService, transport);
    this.contacts = createClient(ContactsService, transport);
    this.suppressions = createClient(SuppressionsService, transport);
    this.webhooks = createClient(WebhooksService, transport);
  }

  /** Sends one email (SendEmailRequest's fields); resolves once it is durably accepted. */
  async sendEmail(
    request: MessageInitShape<typeof SendEmailRequestSchema>,
  ): Promise<SendEmailResponse> {
    return guard(() => this.send.sendEmail(request));
  }

  /** The message with its recipients and event timeline. */
  async getMessage(id: string): Promise<Message> {
    const response = await guard(() => this.messages.getMessage({ id }));
    if (!response.message) throw new Error(`GetMessage answered no message for ${id}`);
    return response.message;
  }

  /** Cancels a scheduled message, or one not yet claimed for delivery. */
  async cancelMessage(id: string): Promise<Message | undefined> {
    return (await guard(() => this.messages.cancelMessage({ id }))).message;
  }

  /** Every message matching the filters, page after page. */
  async *listMessages(
    filters: MessageInitShape<typeof ListMessagesRequestSchema> = {},
  ): AsyncGenerator<Message> {
    let pageToken = "";
    do {
      const page = await guard(() =>
        this.messages.listMessages({ ...filters, pageToken }),
      );
      yield* page.messages;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Every template matching the filters (e.g. { category: "auth" }), page after page. */
  async *listTemplates(
    filters: MessageInitShape<typeof ListTemplatesRequestSchema> = {},
  ): AsyncGenerator<Template> {
    let pageToken = "";
    do {
      const page = await guard(() =>
        this.templates.listTemplates({ ...filters, pageToken }),
      );
      yield* page.templates;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** A dry-run render of a template with variables; sends nothing. */
  async renderTemplate(
    request: MessageInitShape<typeof RenderTemplateRequestSchema>,
  ): Promise<RenderTemplateResponse> {
    return guard(() => this.templates.renderTemplate(request));
  }

  /**
   * The account's events (or one message's, replayed from its start) as
   * they happen. Pass an event's cursor as afterCursor to resume; abort
   * the signal, or stop iterating, to end the stream.
   */
  async *watch(
    request: MessageInitShape<typeof WatchMessagesRequestSchema> = {},
    signal?: AbortSignal,
  ): AsyncGenerator<MessageEvent> {
    try {
      for await (const response of this.messages.watchMessages(request, { signal })) {
        if (response.event) yield response.event;
      }
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.Canceled) return;
      throw PosthornError.from(error);
    }
  }
}

async function guard<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw PosthornError.from(error);
  }
}

/** Whether a message's status has got as far as delivered. */
export function isDelivered(status: MessageStatus): boolean {
  return (
    status === MessageStatus.DELIVERED ||
    status === MessageStatus.OPENED ||
    status === MessageStatus.CLICKED
  );
}
