WITH ev AS (
  SELECT
    `customer_id` AS __key,
    _event_time_us AS __et,
    _seq AS __seq,
    _ingested_at_us AS __ing,
    `amount` AS `v_amount`,
    `flag` AS `v_flag`,
    `item` AS `v_item`,
    `kind` AS `v_kind`,
    `price` AS `v_price`,
    `qty` AS `v_qty`,
    UNIX_MICROS(`seen`) AS `v_seen`
  FROM events
  WHERE
    NOT `customer_id` IS NULL
    AND (
      (
        (
          `kind` <> 'skip'
        ) OR (
          `kind` IS NULL
        )
      )
      AND (
        NOT (
          `item` IN ('bot')
        )
      )
    )
), t AS (
  SELECT
    *,
    (
      (
        __et - 1
      ) - (
        (
          (
            __et - 1
          ) % 10000000
        ) + 10000000
      ) % 10000000
    ) DIV 10000000 AS __k
  FROM ev
  WHERE
    __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000
)
SELECT
  __key,
  __k,
  COUNT(*) FILTER(WHERE
    NOT `v_qty` IS NULL) AS p0,
  COALESCE(CAST(SUM(`v_qty`) AS BIGINT), 0) AS p1,
  COALESCE(SUM(`v_amount`), 0.0) AS p2,
  COALESCE(SUM(`v_amount`), 0.0) AS p3,
  STRUCT(CAST(COALESCE(SUM(`v_amount`), 0) AS DOUBLE) AS s, COUNT(`v_amount`) AS c) AS p4,
  STRUCT(CAST(COALESCE(SUM(`v_qty`), 0) AS BIGINT) AS s, COUNT(`v_qty`) AS c) AS p5,
  MIN(`v_price`) AS p6,
  MAX(`v_price`) AS p7,
  MAX(`v_item`) AS p8,
  COALESCE(COLLECT_LIST(DISTINCT `v_item`) FILTER(WHERE
    NOT `v_item` IS NULL), ARRAY()) AS p9,
  COALESCE(COLLECT_LIST(DISTINCT `v_price`) FILTER(WHERE
    NOT `v_price` IS NULL), ARRAY()) AS p10,
  COALESCE(
    MAX_BY(
      STRUCT(__et AS t, __seq AS s, `v_price` AS v),
      (
        CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
      ),
      2
    ) FILTER(WHERE
      NOT `v_price` IS NULL),
    ARRAY()
  ) AS p11
FROM t
WHERE
  __k >= 177232308
GROUP BY
  __key,
  __k
ORDER BY
  __key NULLS LAST,
  __k NULLS LAST
