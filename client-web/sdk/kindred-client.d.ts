// Types of kindred-client.js and of the kindred.v1 frames, kept by hand.
// client-web/tests/sdk-types.test.mjs checks them against
// docs/protocol.schema.json: every server frame type has an interface here
// and an event, every client frame type an interface, and nothing more.

// ---- shapes shared by frames ---------------------------------------------

export type RequestId = string | number;
/** RFC 3339 in UTC with milliseconds, such as "2026-11-22T20:01:02.123Z". */
export type Timestamp = string;
export type Role = 'member' | 'facilitator' | 'admin';
export type RoomKind = 'always_open' | 'scheduled';
export type RoomMode = 'open' | 'structured';
export type NoticeKind = 'system' | 'crisis_resources' | 'pii_warning' | 'warning' | 'shutdown';
export type RemovedReason = 'kicked' | 'banned' | 'closed';
export type ReportResolution = 'dismissed' | 'acted';
export type AlertKind = 'crisis';
/** The codes of this version; treat any other as not retryable, by its message. */
export type ErrorCode =
  | 'banned' | 'muted' | 'internal' | 'bad_request' | 'unsupported_version' | 'unauthorized' | 'forbidden' | 'not_found'
  | 'not_member' | 'rules_not_accepted' | 'room_full' | 'room_closed' | 'room_locked' | 'rate_limited' | 'slow_mode' | 'too_large'
  | 'not_your_turn' | 'waiting_for_facilitator' | 'content_blocked' | 'invalid_handle' | 'overloaded' | 'unavailable';
/** Failures of the client itself, never sent by a server. */
export type LocalErrorCode = 'disconnected' | 'timeout' | 'closed';

/** A point in a room's history: `since` of a resume. */
export interface Position { epoch: string; seq: number }

export interface Limits {
  max_text_chars: number;
  messages_per_10s: number;
  max_frame_bytes: number;
  max_handle_chars: number;
  max_rooms_per_connection: number;
  max_cw_chars: number;
  reactions: string[];
}

export interface ServerInfo { version: string; node: string }

export interface Sender { member_id: string; handle: string; role: Role }

/** A message: in `message` frames, `joined.history`, `report_filed` and `alert`. Render `text` as plain text. */
export interface ChatMessage {
  room: string;
  message_id: string;
  seq: number;
  from: Sender;
  text: string;
  ts: Timestamp;
  reply_to: string | null;
  cw?: string | null;
  staff?: boolean;
  staff_seq?: number | null;
  reactions?: Record<string, number> | null;
}

export interface Member {
  member_id: string;
  handle: string;
  role: Role;
  muted: boolean;
  muted_until?: Timestamp | null;
  hand_raised: boolean;
  has_floor: boolean;
  first_time?: boolean;
}

export interface ScheduleInfo {
  timezone: string;
  days: string[];
  weeks_of_month?: number[];
  start: string;
  end: string;
  description: string;
  next_open_at?: Timestamp | null;
  closes_at?: Timestamp | null;
}

export interface RoomSummary {
  id: string;
  name: string;
  topic: string;
  description: string;
  tags: string[];
  language: string;
  kind: RoomKind;
  schedule?: ScheduleInfo | null;
  open: boolean;
  locked: boolean;
  capacity: number;
  member_count: number;
  mode: RoomMode;
  rules_version: number;
  requires_facilitator: boolean;
}

export interface SessionInfo { started_at: Timestamp; ends_at: Timestamp; agenda: string | null }

export interface RoomInfo extends RoomSummary {
  rules: string;
  topic_now: string | null;
  slow_mode_s: number;
  pinned: ChatMessage | null;
  session: SessionInfo | null;
}

export interface Report { id: string; message: ChatMessage; reason: string; by: string; at: Timestamp }

export interface Resource { name: string; contact: string; url?: string | null }

export interface Participant { member_id: string; handle: string; messages: number; chars: number; last_at: Timestamp | null }

// ---- server frames -------------------------------------------------------

export interface WelcomeFrame {
  type: 'welcome';
  id?: RequestId | null;
  account: string;
  handle: string;
  role: Role;
  session_token: string;
  heartbeat_s: number;
  limits: Limits;
  server: ServerInfo;
}
export interface PongFrame { type: 'pong'; id?: RequestId | null }
export interface RoomsFrame { type: 'rooms'; id?: RequestId | null; rooms: RoomSummary[] }
export interface JoinedFrame {
  type: 'joined';
  id?: RequestId | null;
  room: RoomInfo;
  me: Member;
  members: Member[];
  history: ChatMessage[];
  epoch: string;
  seq: number;
  recovered: boolean;
}
export interface LeftFrame { type: 'left'; id?: RequestId | null; room: string }
export interface PresenceFrame { type: 'presence'; room: string; joined?: Member | null; left?: string | null; member_count: number }
export interface SentFrame { type: 'sent'; id?: RequestId | null; room: string; message_id: string; seq: number }
export interface MessageFrame extends ChatMessage { type: 'message' }
export interface TypingFrame { type: 'typing'; room: string; member_id: string }
export interface ReportedFrame { type: 'reported'; id?: RequestId | null; report_id: string }
export interface ReportFiledFrame { type: 'report_filed'; room: string; report: Report }
export interface ReportResolvedFrame { type: 'report_resolved'; id?: RequestId | null; room: string; report_id: string }
export interface HandsFrame { type: 'hands'; room: string; queue: string[] }
export interface WhisperedFrame { type: 'whispered'; id?: RequestId | null }
export interface WhisperFrame { type: 'whisper'; room: string; from: Sender; to: string; text: string; ts: Timestamp }
export interface ModeratedFrame { type: 'moderated'; id?: RequestId | null }
export interface MessageDeletedFrame { type: 'message_deleted'; room: string; message_id: string }
export interface MemberUpdateFrame { type: 'member_update'; room: string; member: Member }
export interface RoomUpdateFrame { type: 'room_update'; room: string; info: RoomInfo }
export interface RemovedFrame { type: 'removed'; room: string; reason: RemovedReason; note?: string | null; until?: Timestamp | null }
export interface AlertFrame { type: 'alert'; alert_id: string; room: string; kind: AlertKind; message: ChatMessage; at: Timestamp; facilitators_alerted: number }
export interface AlertResolvedFrame { type: 'alert_resolved'; id?: RequestId | null; alert_id: string; room: string; by: string }
export interface ParticipationFrame { type: 'participation'; id?: RequestId | null; room: string; since: Timestamp; members: Participant[] }
export interface NoticeFrame {
  type: 'notice';
  kind: NoticeKind;
  text: string;
  room?: string | null;
  resources?: Resource[] | null;
  facilitators_alerted?: number | null;
}
export interface ForgottenFrame { type: 'forgotten'; id?: RequestId | null }
export interface UnsentFrame { type: 'unsent'; id?: RequestId | null; room: string; message_id: string }
export interface ReactedFrame { type: 'reacted'; id?: RequestId | null; room: string; message_id: string }
export interface ReactionsFrame { type: 'reactions'; room: string; message_id: string; counts: Record<string, number> }
export interface ErrorFrame {
  type: 'error';
  id?: RequestId | null;
  code: ErrorCode;
  message: string;
  retry_after_ms?: number | null;
  rules_version?: number | null;
  rules?: string | null;
  alternatives?: RoomSummary[] | null;
  next_open_at?: Timestamp | null;
  until?: Timestamp | null;
}

/** Every frame a server sends, by `type`. */
export interface ServerFrames {
  welcome: WelcomeFrame;
  pong: PongFrame;
  rooms: RoomsFrame;
  joined: JoinedFrame;
  left: LeftFrame;
  presence: PresenceFrame;
  sent: SentFrame;
  message: MessageFrame;
  typing: TypingFrame;
  reported: ReportedFrame;
  report_filed: ReportFiledFrame;
  report_resolved: ReportResolvedFrame;
  hands: HandsFrame;
  whispered: WhisperedFrame;
  whisper: WhisperFrame;
  moderated: ModeratedFrame;
  message_deleted: MessageDeletedFrame;
  member_update: MemberUpdateFrame;
  room_update: RoomUpdateFrame;
  removed: RemovedFrame;
  alert: AlertFrame;
  alert_resolved: AlertResolvedFrame;
  participation: ParticipationFrame;
  notice: NoticeFrame;
  forgotten: ForgottenFrame;
  unsent: UnsentFrame;
  reacted: ReactedFrame;
  reactions: ReactionsFrame;
  error: ErrorFrame;
}
export type ServerFrame = ServerFrames[keyof ServerFrames];

// ---- client frames (what `request` and `notify` send; the client adds `id`) ----

export interface HelloFrame { type: 'hello'; id?: RequestId; token?: string; handle?: string; locale?: string }
export interface PingFrame { type: 'ping'; id?: RequestId }
export interface ListRoomsFrame { type: 'list_rooms'; id?: RequestId }
export interface JoinFrame { type: 'join'; id?: RequestId; room: string; accept_rules?: number; since?: Position }
export interface LeaveFrame { type: 'leave'; id?: RequestId; room: string }
export interface SendFrame { type: 'send'; id?: RequestId; room: string; text: string; reply_to?: string; cw?: string; staff?: boolean }
export interface TypingRequestFrame { type: 'typing'; id?: RequestId; room: string }
export interface ReportFrame { type: 'report'; id?: RequestId; room: string; message_id: string; reason?: string }
export interface RaiseHandFrame { type: 'raise_hand'; id?: RequestId; room: string }
export interface LowerHandFrame { type: 'lower_hand'; id?: RequestId; room: string }
export interface WhisperRequestFrame { type: 'whisper'; id?: RequestId; room: string; to: string; text: string }
export type ModerationAction =
  | { action: 'delete_message'; message_id: string; reason?: string }
  | { action: 'warn'; member_id: string; reason: string }
  | { action: 'mute'; member_id: string; duration_s?: number; reason?: string }
  | { action: 'unmute'; member_id: string; reason?: string }
  | { action: 'kick'; member_id: string; reason?: string }
  | { action: 'ban'; member_id: string; duration_s?: number; reason?: string; service?: boolean }
  | { action: 'unban'; member_id: string; reason?: string }
  | { action: 'slow_mode'; seconds: number }
  | { action: 'lock' }
  | { action: 'unlock' }
  | { action: 'set_topic'; text: string }
  | { action: 'set_mode'; mode: RoomMode }
  | { action: 'give_floor'; member_id: string }
  | { action: 'end_floor'; member_id?: string }
  | { action: 'pin'; message_id: string }
  | { action: 'unpin' }
  | { action: 'start_session'; minutes: number; agenda?: string }
  | { action: 'end_session'; note?: string };
export type ModerateFrame = { type: 'moderate'; id?: RequestId; room: string } & ModerationAction;
export interface ResolveReportFrame { type: 'resolve_report'; id?: RequestId; room: string; report_id: string; resolution: ReportResolution }
export interface ResolveAlertFrame { type: 'resolve_alert'; id?: RequestId; room: string; alert_id: string; note?: string }
export interface UnsendFrame { type: 'unsend'; id?: RequestId; room: string; message_id: string }
export interface ReactFrame { type: 'react'; id?: RequestId; room: string; message_id: string; reaction: string; on: boolean }
export interface ParticipationRequestFrame { type: 'participation'; id?: RequestId; room: string }
export interface ForgetMeFrame { type: 'forget_me'; id?: RequestId }

/** Every frame a client sends, by `type`. */
export interface ClientFrames {
  hello: HelloFrame;
  ping: PingFrame;
  list_rooms: ListRoomsFrame;
  join: JoinFrame;
  leave: LeaveFrame;
  send: SendFrame;
  typing: TypingRequestFrame;
  report: ReportFrame;
  raise_hand: RaiseHandFrame;
  lower_hand: LowerHandFrame;
  whisper: WhisperRequestFrame;
  moderate: ModerateFrame;
  resolve_report: ResolveReportFrame;
  resolve_alert: ResolveAlertFrame;
  unsend: UnsendFrame;
  react: ReactFrame;
  participation: ParticipationRequestFrame;
  forget_me: ForgetMeFrame;
}
export type ClientFrame = ClientFrames[keyof ClientFrames];

/** The success reply of each request that has one. */
export interface Replies {
  hello: WelcomeFrame;
  ping: PongFrame;
  list_rooms: RoomsFrame;
  join: JoinedFrame;
  leave: LeftFrame;
  send: SentFrame;
  report: ReportedFrame;
  whisper: WhisperedFrame;
  moderate: ModeratedFrame;
  resolve_report: ReportResolvedFrame;
  resolve_alert: AlertResolvedFrame;
  unsend: UnsentFrame;
  react: ReactedFrame;
  participation: ParticipationFrame;
  forget_me: ForgottenFrame;
}

// ---- the client ------------------------------------------------------------

export declare const SUBPROTOCOL: 'kindred.v1';
/** Close codes after which the client does not reconnect. */
export declare const FINAL_CLOSE_CODES: readonly number[];

export declare class KindredError extends Error {
  constructor(frame: { code: string; message?: string; retry_after_ms?: number | null });
  readonly name: 'KindredError';
  readonly code: ErrorCode | LocalErrorCode | string;
  /** The whole `error` frame: `rules`, `rules_version`, `until`, `alternatives`, `next_open_at`… */
  readonly frame: ErrorFrame | { type: 'error'; code: LocalErrorCode; message: string };
  readonly retryAfterMs: number | undefined;
}

export interface KindredClientOptions {
  /** A `session_token` from an earlier welcome, or a staff JWT. Replaced by each welcome's `session_token`. */
  token?: string;
  /** The wished-for display name (new members only). */
  handle?: string;
  /** BCP 47 tag for the server's texts. */
  locale?: string;
  /** A WebSocket constructor where there is no global one. */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
  /** How long `request` waits for a reply. Default 15000. */
  requestTimeoutMs?: number;
  /** The first reconnect delay's cap; doubles per failure. Default 500. */
  baseDelayMs?: number;
  /** The largest reconnect delay cap. Default 30000. */
  maxDelayMs?: number;
  /** A session that lasted this long starts the backoff over. Default 10000. */
  stableAfterMs?: number;
  /** How often to send `ping`. Default: welcome's `heartbeat_s`. */
  pingIntervalMs?: number;
  /** Silence after a ping that means the socket is dead. Default: welcome's `heartbeat_s`. */
  pongTimeoutMs?: number;
}

/** The outcome of resuming one room after a reconnect. */
export interface ResumedRoom {
  room: string;
  /** false when the gap could not be filled (or the room could not be joined again). */
  recovered: boolean;
  /** Set when the room could not be joined again (banned, rules changed, closed…): the client left it. */
  error?: KindredError;
}

/** The client's own events, beside the server's frames. */
export interface ClientEvents {
  /** The connection was lost; the next attempt starts after `delayMs`. */
  reconnecting: { attempt: number; delayMs: number; code: number };
  /** A new session is up and every room was joined again (its missed messages already emitted). */
  reconnected: { rooms: ResumedRoom[]; welcome: WelcomeFrame };
  /** A socket ended. `willReconnect: false`: the client is done (see FINAL_CLOSE_CODES); `error` says why. */
  closed: { code: number; reason: string; willReconnect: boolean; error?: KindredError };
  /** Every server frame passed to the listeners of its type. */
  frame: ServerFrame;
}

export type KindredEvents = ServerFrames & ClientEvents;

export declare class KindredClient {
  /**
   * @param url the WebSocket endpoint (`wss://host/ws`); a list of a cluster's nodes,
   *   tried in turn (each reconnect moves to the next); or a function giving the URL for attempt n
   */
  constructor(url: string | string[] | ((attempt: number) => string), options?: KindredClientOptions);
  /** Presented at the next hello; replaced by each welcome's `session_token`. */
  token: string | undefined;
  handle: string | undefined;
  locale: string | undefined;
  readonly state: 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
  readonly connected: boolean;
  readonly welcome: WelcomeFrame | null;
  /** The rooms this client is in and resumes after a reconnect. */
  readonly rooms: string[];
  /** The `since` of the room's next resume. */
  position(room: string): Position | undefined;
  /** Resolves with the welcome once a session is up (trying again while the server is unreachable). */
  connect(): Promise<WelcomeFrame>;
  join(room: string, options?: { acceptRules?: number; since?: Position }): Promise<JoinedFrame>;
  leave(room: string): Promise<LeftFrame>;
  send(room: string, text: string, options?: { replyTo?: string; cw?: string; staff?: boolean }): Promise<SentFrame>;
  request<T extends keyof Replies>(frame: ClientFrames[T] & { type: T }, options?: { timeoutMs?: number }): Promise<Replies[T]>;
  /** For requests with no success reply (typing, raise_hand, lower_hand); false when not connected. */
  notify(frame: TypingRequestFrame | RaiseHandFrame | LowerHandFrame): boolean;
  on<K extends keyof KindredEvents>(type: K, fn: (detail: KindredEvents[K]) => void): this;
  off<K extends keyof KindredEvents>(type: K, fn: (detail: KindredEvents[K]) => void): this;
  /** While waiting to reconnect, try now. */
  reconnectNow(): void;
  /** Close for good. */
  close(): void;
}
