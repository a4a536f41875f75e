CREATE TABLE IF NOT EXISTS switchboard.sms_events (
  `message_sid` String,
  `message_status` LowCardinality(String),
  `error_code` Nullable(String),
  `account_sid` Nullable(String),
  `from` Nullable(String),
  `to` Nullable(String),
  `body` Nullable(String),
  `num_media` Nullable(Int64),
  `num_segments` Nullable(Int64),
  `timestamp` Nullable(DateTime64(3, 'UTC')),
  `status_rank` Int8,
  `campaign` LowCardinality(String),
  `received_at` DateTime64(3, 'UTC'),
  `event_time` DateTime64(3, 'UTC'),
  `tags` Map(String, String),
  `extra` Map(String, String),
  `parse_errors` Map(String, String)
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (`message_sid`, `message_status`);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `message_sid` String;

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `message_status` LowCardinality(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `error_code` Nullable(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `account_sid` Nullable(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `from` Nullable(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `to` Nullable(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `body` Nullable(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `num_media` Nullable(Int64);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `num_segments` Nullable(Int64);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `timestamp` Nullable(DateTime64(3, 'UTC'));

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `status_rank` Int8;

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `campaign` LowCardinality(String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `received_at` DateTime64(3, 'UTC');

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `event_time` DateTime64(3, 'UTC');

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `tags` Map(String, String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `extra` Map(String, String);

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS `parse_errors` Map(String, String);

CREATE TABLE IF NOT EXISTS switchboard.call_events (
  `call_sid` String,
  `call_status` LowCardinality(String),
  `account_sid` Nullable(String),
  `from` Nullable(String),
  `to` Nullable(String),
  `direction` Nullable(String),
  `api_version` Nullable(String),
  `forwarded_from` Nullable(String),
  `caller_name` Nullable(String),
  `parent_call_sid` Nullable(String),
  `call_duration` Nullable(Int64),
  `recording_url` Nullable(String),
  `recording_sid` Nullable(String),
  `recording_duration` Nullable(Int64),
  `callback_source` Nullable(String),
  `timestamp` Nullable(DateTime64(3, 'UTC')),
  `sequence_number` Nullable(Int64),
  `audio_in_mos` Nullable(Float64),
  `error_code` Nullable(String),
  `status_rank` Int8,
  `campaign` LowCardinality(String),
  `received_at` DateTime64(3, 'UTC'),
  `event_time` DateTime64(3, 'UTC'),
  `tags` Map(String, String),
  `extra` Map(String, String),
  `parse_errors` Map(String, String)
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (`call_sid`, `call_status`, ifNull(`sequence_number`, -1));

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `call_sid` String;

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `call_status` LowCardinality(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `account_sid` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `from` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `to` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `direction` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `api_version` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `forwarded_from` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `caller_name` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `parent_call_sid` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `call_duration` Nullable(Int64);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `recording_url` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `recording_sid` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `recording_duration` Nullable(Int64);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `callback_source` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `timestamp` Nullable(DateTime64(3, 'UTC'));

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `sequence_number` Nullable(Int64);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `audio_in_mos` Nullable(Float64);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `error_code` Nullable(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `status_rank` Int8;

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `campaign` LowCardinality(String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `received_at` DateTime64(3, 'UTC');

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `event_time` DateTime64(3, 'UTC');

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `tags` Map(String, String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `extra` Map(String, String);

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS `parse_errors` Map(String, String);

CREATE TABLE IF NOT EXISTS switchboard.recording_events (
  `recording_sid` String,
  `recording_status` LowCardinality(String),
  `account_sid` Nullable(String),
  `call_sid` Nullable(String),
  `recording_url` Nullable(String),
  `recording_duration` Nullable(Int64),
  `recording_channels` Nullable(Int64),
  `recording_source` Nullable(String),
  `status_rank` Int8,
  `campaign` LowCardinality(String),
  `received_at` DateTime64(3, 'UTC'),
  `event_time` DateTime64(3, 'UTC'),
  `tags` Map(String, String),
  `extra` Map(String, String),
  `parse_errors` Map(String, String)
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (`recording_sid`, `recording_status`);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `recording_sid` String;

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `recording_status` LowCardinality(String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `account_sid` Nullable(String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `call_sid` Nullable(String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `recording_url` Nullable(String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `recording_duration` Nullable(Int64);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `recording_channels` Nullable(Int64);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `recording_source` Nullable(String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `status_rank` Int8;

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `campaign` LowCardinality(String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `received_at` DateTime64(3, 'UTC');

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `event_time` DateTime64(3, 'UTC');

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `tags` Map(String, String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `extra` Map(String, String);

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS `parse_errors` Map(String, String);

CREATE TABLE IF NOT EXISTS switchboard.transcription_events (
  `transcription_sid` String,
  `transcription_status` LowCardinality(String),
  `transcription_text` Nullable(String),
  `transcription_url` Nullable(String),
  `recording_sid` Nullable(String),
  `recording_url` Nullable(String),
  `account_sid` Nullable(String),
  `call_sid` Nullable(String),
  `from` Nullable(String),
  `to` Nullable(String),
  `status_rank` Int8,
  `campaign` LowCardinality(String),
  `received_at` DateTime64(3, 'UTC'),
  `event_time` DateTime64(3, 'UTC'),
  `tags` Map(String, String),
  `extra` Map(String, String),
  `parse_errors` Map(String, String)
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (`transcription_sid`, `transcription_status`);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `transcription_sid` String;

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `transcription_status` LowCardinality(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `transcription_text` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `transcription_url` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `recording_sid` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `recording_url` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `account_sid` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `call_sid` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `from` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `to` Nullable(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `status_rank` Int8;

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `campaign` LowCardinality(String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `received_at` DateTime64(3, 'UTC');

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `event_time` DateTime64(3, 'UTC');

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `tags` Map(String, String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `extra` Map(String, String);

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS `parse_errors` Map(String, String);

CREATE TABLE IF NOT EXISTS switchboard.inbound_call_events (
  `call_sid` String,
  `call_status` LowCardinality(String),
  `account_sid` Nullable(String),
  `from` Nullable(String),
  `to` Nullable(String),
  `timestamp` Nullable(DateTime64(3, 'UTC')),
  `call_duration` Nullable(Int64),
  `audio_in_mos` Nullable(Float64),
  `status_rank` Int8,
  `campaign` LowCardinality(String),
  `received_at` DateTime64(3, 'UTC'),
  `event_time` DateTime64(3, 'UTC'),
  `tags` Map(String, String),
  `extra` Map(String, String),
  `parse_errors` Map(String, String)
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (`call_sid`, `call_status`);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `call_sid` String;

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `call_status` LowCardinality(String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `account_sid` Nullable(String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `from` Nullable(String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `to` Nullable(String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `timestamp` Nullable(DateTime64(3, 'UTC'));

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `call_duration` Nullable(Int64);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `audio_in_mos` Nullable(Float64);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `status_rank` Int8;

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `campaign` LowCardinality(String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `received_at` DateTime64(3, 'UTC');

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `event_time` DateTime64(3, 'UTC');

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `tags` Map(String, String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `extra` Map(String, String);

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS `parse_errors` Map(String, String);

CREATE TABLE IF NOT EXISTS switchboard.schema_migrations 
        (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = ReplacingMergeTree ORDER BY version;

CREATE TABLE IF NOT EXISTS switchboard.alerts 
        (alert_id String, type LowCardinality(String), scope String,
         window_start DateTime64(3, 'UTC'), window_end DateTime64(3, 'UTC'),
         count UInt64, threshold Float64, value Float64, raised_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree ORDER BY alert_id;

CREATE TABLE IF NOT EXISTS switchboard.failed_messages 
        (message_sid String, message_status LowCardinality(String),
         error_code Nullable(String), error_message Nullable(String),
         date_sent Nullable(DateTime64(3, 'UTC')),
         `to` Nullable(String), `from` Nullable(String), body Nullable(String),
         campaign LowCardinality(String), received_at DateTime64(3, 'UTC'),
         enriched_at DateTime64(3, 'UTC'), enrichment LowCardinality(String))
        ENGINE = ReplacingMergeTree(enriched_at) ORDER BY message_sid;

CREATE TABLE IF NOT EXISTS switchboard.delivery_windows 
        (scope String, window_s UInt32, window_start DateTime64(3, 'UTC'),
         window_end DateTime64(3, 'UTC'), sent UInt64, delivered UInt64, undelivered UInt64,
         failed UInt64, unconfirmed UInt64, delivery_rate Nullable(Float64),
         updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY (scope, window_s, window_start);

CREATE TABLE IF NOT EXISTS switchboard.call_windows 
        (scope String, window_s UInt32, window_start DateTime64(3, 'UTC'),
         window_end DateTime64(3, 'UTC'), calls UInt64, completed UInt64, failed UInt64,
         busy UInt64, no_answer UInt64, canceled UInt64, duration_s UInt64, mos_count UInt64,
         mos_sum Float64, mos_mean Nullable(Float64), updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY (scope, window_s, window_start);

CREATE TABLE IF NOT EXISTS switchboard.forwards 
        (forward_id String, kind LowCardinality(String), `to` String, `from` String,
         body String, call_sid Nullable(String), state LowCardinality(String),
         provider_sid Nullable(String), attempts UInt32, error Nullable(String),
         requested_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY forward_id;

CREATE TABLE IF NOT EXISTS switchboard.dead_letters 
        (letter_id String, reason LowCardinality(String), message String,
         stage LowCardinality(String), topic LowCardinality(String),
         `partition` Int32, `offset` Int64, `key` Nullable(String), sid Nullable(String),
         raw String, raw_encoding LowCardinality(String), dead_at DateTime64(3, 'UTC'),
         state LowCardinality(String), updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY letter_id;

CREATE TABLE IF NOT EXISTS switchboard.erasures 
        (erasure_id String, erased_at DateTime64(3, 'UTC'),
         clickhouse_rows Map(String, UInt64), kafka_records Map(String, UInt64),
         export_rows UInt64)
        ENGINE = ReplacingMergeTree ORDER BY erasure_id;

SELECT version FROM switchboard.schema_migrations;

ALTER TABLE switchboard.alerts ADD COLUMN IF NOT EXISTS fingerprint String DEFAULT concat(type, '/', scope), ADD COLUMN IF NOT EXISTS state LowCardinality(String) DEFAULT 'firing', ADD COLUMN IF NOT EXISTS started_at DateTime64(3, 'UTC') DEFAULT raised_at, ADD COLUMN IF NOT EXISTS repeat UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS silenced Bool DEFAULT false, ADD COLUMN IF NOT EXISTS rule LowCardinality(String) DEFAULT 'window', ADD COLUMN IF NOT EXISTS version UInt16 DEFAULT 1;

INSERT INTO switchboard.schema_migrations (version, name) VALUES ({v:UInt32}, {n:String});

ALTER TABLE switchboard.delivery_windows ADD COLUMN IF NOT EXISTS version UInt16 DEFAULT 1;

ALTER TABLE switchboard.call_windows ADD COLUMN IF NOT EXISTS version UInt16 DEFAULT 1;

INSERT INTO switchboard.schema_migrations (version, name) VALUES ({v:UInt32}, {n:String});

ALTER TABLE switchboard.sms_events ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'callback';

ALTER TABLE switchboard.call_events ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'callback';

ALTER TABLE switchboard.recording_events ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'callback';

ALTER TABLE switchboard.transcription_events ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'callback';

ALTER TABLE switchboard.inbound_call_events ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT 'callback';

INSERT INTO switchboard.schema_migrations (version, name) VALUES ({v:UInt32}, {n:String});

CREATE TABLE IF NOT EXISTS switchboard.sms_events_in_c17ac6b6a0 (received_at Float64, event_time Float64, campaign String, `values` Tuple(`message_sid` Nullable(String), `message_status` Nullable(String), `error_code` Nullable(String), `account_sid` Nullable(String), `from` Nullable(String), `to` Nullable(String), `body` Nullable(String), `num_media` Nullable(Int64), `num_segments` Nullable(Int64), `timestamp` Nullable(Float64)), tags Map(String, String), extra Map(String, String), parse_errors Map(String, String), source String) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS switchboard.sms_events_mv_c17ac6b6a0 TO switchboard.sms_events AS SELECT ifNull(tupleElement(`values`, 'message_sid'), '') AS `message_sid`, ifNull(tupleElement(`values`, 'message_status'), '') AS `message_status`, tupleElement(`values`, 'error_code') AS `error_code`, tupleElement(`values`, 'account_sid') AS `account_sid`, tupleElement(`values`, 'from') AS `from`, tupleElement(`values`, 'to') AS `to`, tupleElement(`values`, 'body') AS `body`, tupleElement(`values`, 'num_media') AS `num_media`, tupleElement(`values`, 'num_segments') AS `num_segments`, toDateTime64(tupleElement(`values`, 'timestamp'), 3, 'UTC') AS `timestamp`, toInt8(transform(ifNull(tupleElement(`values`, 'message_status'), ''), ['accepted', 'scheduled', 'queued', 'initiated', 'sending', 'sent', 'receiving', 'delivered', 'read', 'partially_delivered', 'undelivered', 'failed', 'invalid', 'received', 'canceled'], [0, 0, 1, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4], -1)) AS status_rank, campaign, toDateTime64(received_at, 3, 'UTC') AS received_at, toDateTime64(event_time, 3, 'UTC') AS event_time, tags, extra, parse_errors, if(source = '', 'callback', source) AS source FROM switchboard.sms_events_in_c17ac6b6a0;

CREATE TABLE IF NOT EXISTS switchboard.call_events_in_e5cf3cf7f2 (received_at Float64, event_time Float64, campaign String, `values` Tuple(`call_sid` Nullable(String), `call_status` Nullable(String), `account_sid` Nullable(String), `from` Nullable(String), `to` Nullable(String), `direction` Nullable(String), `api_version` Nullable(String), `forwarded_from` Nullable(String), `caller_name` Nullable(String), `parent_call_sid` Nullable(String), `call_duration` Nullable(Int64), `recording_url` Nullable(String), `recording_sid` Nullable(String), `recording_duration` Nullable(Int64), `callback_source` Nullable(String), `timestamp` Nullable(Float64), `sequence_number` Nullable(Int64), `audio_in_mos` Nullable(Float64), `error_code` Nullable(String)), tags Map(String, String), extra Map(String, String), parse_errors Map(String, String), source String) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS switchboard.call_events_mv_e5cf3cf7f2 TO switchboard.call_events AS SELECT ifNull(tupleElement(`values`, 'call_sid'), '') AS `call_sid`, ifNull(tupleElement(`values`, 'call_status'), '') AS `call_status`, tupleElement(`values`, 'account_sid') AS `account_sid`, tupleElement(`values`, 'from') AS `from`, tupleElement(`values`, 'to') AS `to`, tupleElement(`values`, 'direction') AS `direction`, tupleElement(`values`, 'api_version') AS `api_version`, tupleElement(`values`, 'forwarded_from') AS `forwarded_from`, tupleElement(`values`, 'caller_name') AS `caller_name`, tupleElement(`values`, 'parent_call_sid') AS `parent_call_sid`, tupleElement(`values`, 'call_duration') AS `call_duration`, tupleElement(`values`, 'recording_url') AS `recording_url`, tupleElement(`values`, 'recording_sid') AS `recording_sid`, tupleElement(`values`, 'recording_duration') AS `recording_duration`, tupleElement(`values`, 'callback_source') AS `callback_source`, toDateTime64(tupleElement(`values`, 'timestamp'), 3, 'UTC') AS `timestamp`, tupleElement(`values`, 'sequence_number') AS `sequence_number`, tupleElement(`values`, 'audio_in_mos') AS `audio_in_mos`, tupleElement(`values`, 'error_code') AS `error_code`, toInt8(transform(ifNull(tupleElement(`values`, 'call_status'), ''), ['queued', 'initiated', 'ringing', 'answered', 'in-progress', 'completed', 'busy', 'no-answer', 'canceled', 'failed'], [0, 1, 2, 3, 3, 4, 4, 4, 4, 4], -1)) AS status_rank, campaign, toDateTime64(received_at, 3, 'UTC') AS received_at, toDateTime64(event_time, 3, 'UTC') AS event_time, tags, extra, parse_errors, if(source = '', 'callback', source) AS source FROM switchboard.call_events_in_e5cf3cf7f2;

CREATE TABLE IF NOT EXISTS switchboard.recording_events_in_b9dedfa110 (received_at Float64, event_time Float64, campaign String, `values` Tuple(`recording_sid` Nullable(String), `recording_status` Nullable(String), `account_sid` Nullable(String), `call_sid` Nullable(String), `recording_url` Nullable(String), `recording_duration` Nullable(Int64), `recording_channels` Nullable(Int64), `recording_source` Nullable(String)), tags Map(String, String), extra Map(String, String), parse_errors Map(String, String), source String) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS switchboard.recording_events_mv_b9dedfa110 TO switchboard.recording_events AS SELECT ifNull(tupleElement(`values`, 'recording_sid'), '') AS `recording_sid`, ifNull(tupleElement(`values`, 'recording_status'), '') AS `recording_status`, tupleElement(`values`, 'account_sid') AS `account_sid`, tupleElement(`values`, 'call_sid') AS `call_sid`, tupleElement(`values`, 'recording_url') AS `recording_url`, tupleElement(`values`, 'recording_duration') AS `recording_duration`, tupleElement(`values`, 'recording_channels') AS `recording_channels`, tupleElement(`values`, 'recording_source') AS `recording_source`, toInt8(transform(ifNull(tupleElement(`values`, 'recording_status'), ''), ['in-progress', 'completed', 'absent', 'failed'], [0, 1, 1, 1], -1)) AS status_rank, campaign, toDateTime64(received_at, 3, 'UTC') AS received_at, toDateTime64(event_time, 3, 'UTC') AS event_time, tags, extra, parse_errors, if(source = '', 'callback', source) AS source FROM switchboard.recording_events_in_b9dedfa110;

CREATE TABLE IF NOT EXISTS switchboard.transcription_events_in_6f8b1b3393 (received_at Float64, event_time Float64, campaign String, `values` Tuple(`transcription_sid` Nullable(String), `transcription_status` Nullable(String), `transcription_text` Nullable(String), `transcription_url` Nullable(String), `recording_sid` Nullable(String), `recording_url` Nullable(String), `account_sid` Nullable(String), `call_sid` Nullable(String), `from` Nullable(String), `to` Nullable(String)), tags Map(String, String), extra Map(String, String), parse_errors Map(String, String), source String) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS switchboard.transcription_events_mv_6f8b1b3393 TO switchboard.transcription_events AS SELECT ifNull(tupleElement(`values`, 'transcription_sid'), '') AS `transcription_sid`, ifNull(tupleElement(`values`, 'transcription_status'), '') AS `transcription_status`, tupleElement(`values`, 'transcription_text') AS `transcription_text`, tupleElement(`values`, 'transcription_url') AS `transcription_url`, tupleElement(`values`, 'recording_sid') AS `recording_sid`, tupleElement(`values`, 'recording_url') AS `recording_url`, tupleElement(`values`, 'account_sid') AS `account_sid`, tupleElement(`values`, 'call_sid') AS `call_sid`, tupleElement(`values`, 'from') AS `from`, tupleElement(`values`, 'to') AS `to`, toInt8(transform(ifNull(tupleElement(`values`, 'transcription_status'), ''), ['in-progress', 'completed', 'failed'], [0, 1, 1], -1)) AS status_rank, campaign, toDateTime64(received_at, 3, 'UTC') AS received_at, toDateTime64(event_time, 3, 'UTC') AS event_time, tags, extra, parse_errors, if(source = '', 'callback', source) AS source FROM switchboard.transcription_events_in_6f8b1b3393;

CREATE TABLE IF NOT EXISTS switchboard.inbound_call_events_in_7dc88b097f (received_at Float64, event_time Float64, campaign String, `values` Tuple(`call_sid` Nullable(String), `call_status` Nullable(String), `account_sid` Nullable(String), `from` Nullable(String), `to` Nullable(String), `timestamp` Nullable(Float64), `call_duration` Nullable(Int64), `audio_in_mos` Nullable(Float64)), tags Map(String, String), extra Map(String, String), parse_errors Map(String, String), source String) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS switchboard.inbound_call_events_mv_7dc88b097f TO switchboard.inbound_call_events AS SELECT ifNull(tupleElement(`values`, 'call_sid'), '') AS `call_sid`, ifNull(tupleElement(`values`, 'call_status'), '') AS `call_status`, tupleElement(`values`, 'account_sid') AS `account_sid`, tupleElement(`values`, 'from') AS `from`, tupleElement(`values`, 'to') AS `to`, toDateTime64(tupleElement(`values`, 'timestamp'), 3, 'UTC') AS `timestamp`, tupleElement(`values`, 'call_duration') AS `call_duration`, tupleElement(`values`, 'audio_in_mos') AS `audio_in_mos`, toInt8(transform(ifNull(tupleElement(`values`, 'call_status'), ''), ['queued', 'initiated', 'ringing', 'answered', 'in-progress', 'completed', 'busy', 'no-answer', 'canceled', 'failed'], [0, 1, 2, 3, 3, 4, 4, 4, 4, 4], -1)) AS status_rank, campaign, toDateTime64(received_at, 3, 'UTC') AS received_at, toDateTime64(event_time, 3, 'UTC') AS event_time, tags, extra, parse_errors, if(source = '', 'callback', source) AS source FROM switchboard.inbound_call_events_in_7dc88b097f;

CREATE OR REPLACE VIEW switchboard.delivery_by_minute AS 
        SELECT window_start AS minute, splitByChar(':', scope)[1] AS scope_type,
       substring(scope, position(scope, ':') + 1) AS scope_value,
               sent, delivered, undelivered, failed, unconfirmed, delivery_rate
        FROM switchboard.delivery_windows FINAL
        WHERE window_s = 60;

CREATE OR REPLACE VIEW switchboard.mos_by_minute AS 
        SELECT window_start AS minute, splitByChar(':', scope)[1] AS scope_type,
       substring(scope, position(scope, ':') + 1) AS scope_value,
               calls, completed, failed, duration_s, mos_count, mos_sum, mos_mean
        FROM switchboard.call_windows FINAL
        WHERE window_s = 60;
