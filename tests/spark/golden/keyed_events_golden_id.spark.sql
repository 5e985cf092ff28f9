SELECT
  e.*
  EXCEPT (_golden_id),
  k.key AS _golden_id
FROM __raw_events AS e
JOIN __id_keys AS k
  ON e._identity_record = k.record_id
