SELECT e.*, k.key AS "account_id" FROM __raw_events e JOIN __id_keys k ON e._identity_record = k.record_id
