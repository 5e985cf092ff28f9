WITH ev AS (SELECT "customer_id" AS __key, _event_time_us AS __et, _seq AS __seq, _ingested_at_us AS __ing, "amount" AS "v_amount", "flag" AS "v_flag", "item" AS "v_item", "kind" AS "v_kind", "price" AS "v_price", "qty" AS "v_qty", epoch_us("seen") AS "v_seen" FROM events WHERE "customer_id" IS NOT NULL AND ((("kind" <> 'skip') OR ("kind" IS NULL)) AND (NOT ("item" IN ('bot'))))),
t AS (SELECT *, ((__et - 1) - (((__et - 1) % 1000000) + 1000000) % 1000000) // 1000000 AS __k FROM ev WHERE __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000)
SELECT __key, __k, count(*) FILTER (WHERE TRUE) AS p0
FROM t WHERE __k >= 1772323170
GROUP BY __key, __k
ORDER BY __key, __k
