WITH ev AS (SELECT "customer_id" AS __key, _event_time_us AS __et, _seq AS __seq, _ingested_at_us AS __ing, "amount" AS "v_amount", "kind" AS "v_kind" FROM events WHERE "customer_id" IS NOT NULL AND ("kind" <> 'it''s a \ kind'))
SELECT DISTINCT __key FROM ev
WHERE __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000
