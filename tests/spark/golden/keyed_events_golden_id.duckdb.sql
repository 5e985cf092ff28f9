SELECT e.* REPLACE (k.key AS _golden_id) FROM __raw_events e JOIN __id_keys k ON e._identity_record = k.record_id
